"""3. A client cannot choose its own address: X-Forwarded-For counts only when it comes from a proxy
named in GATEWAY_TRUSTED_PROXIES (none by default), and then only the hop that proxy vouches for.
Observed through identity's limit of SMS codes per client address."""

from __future__ import annotations

import httpx
import pytest

from tests.security.conftest import ADDRESS_CODES_PER_HOUR, mts_number

pytestmark = pytest.mark.e2e


async def ask_code(client: httpx.AsyncClient, forwarded_for: str) -> httpx.Response:
    return await client.post("/v1/auth/phone/codes", json={"phone": mts_number()},
                             headers={"X-Forwarded-For": forwarded_for})


async def test_by_default_forwarded_for_is_ignored_and_the_peer_is_the_client(default_stack):
    async with httpx.AsyncClient(base_url=default_stack.gateway_url, timeout=15) as client:
        answers = [await ask_code(client, f"198.51.100.{n}") for n in range(ADDRESS_CODES_PER_HOUR + 1)]
    assert [a.status_code for a in answers[:-1]] == [200] * ADDRESS_CODES_PER_HOUR, [a.text for a in answers]
    # Four "different" clients, one real address: the limit per address holds.
    assert answers[-1].status_code == 429 and answers[-1].json()["code"] == "RATE_LIMITED", answers[-1].text


async def test_behind_a_trusted_proxy_the_hop_it_vouches_for_is_the_client(proxied_stack):
    async with httpx.AsyncClient(base_url=proxied_stack.gateway_url, timeout=15) as client:
        mine = [await ask_code(client, "198.51.100.20") for _ in range(ADDRESS_CODES_PER_HOUR)]
        # The client prepends an address of its choice: the proxy's hop (the last) still counts.
        forged = await ask_code(client, "203.0.113.99, 198.51.100.20")
        other = await ask_code(client, "198.51.100.21")
    assert [a.status_code for a in mine] == [200] * ADDRESS_CODES_PER_HOUR, [a.text for a in mine]
    assert forged.status_code == 429 and forged.json()["code"] == "RATE_LIMITED", forged.text
    assert other.status_code == 200, other.text
