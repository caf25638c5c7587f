"""8. Nobody can lock a number out of sign-in: wrong codes lock out the address that sends them, not
the number; guessing stays infeasible (per-code tries, per-address lock, the number's guess budget:
docs/identity.md). The stack sits behind a trusted proxy, so the test can speak from two addresses."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import read_code
from tests.security.conftest import eventually, mts_number

pytestmark = pytest.mark.e2e

STRANGER = {"X-Forwarded-For": "198.51.100.66"}
OWNER = {"X-Forwarded-For": "203.0.113.7"}
MAX_FAILURES = 10  # IDENTITY_PHONE_MAX_FAILURES, the default


async def newer_code(client: httpx.AsyncClient, phone: str, old: str) -> str | None:
    """The newest code sent to `phone`, once it is not `old` (delivery is asynchronous)."""
    code = await read_code(client, phone)
    return code if code != old else None


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_a_stranger_sending_wrong_codes_locks_out_only_themselves(proxied_stack):
    phone = mts_number()
    async with httpx.AsyncClient(base_url=proxied_stack.gateway_url, timeout=15) as client:
        started = await client.post("/v1/auth/phone/codes", json={"phone": phone}, headers=STRANGER)
        assert started.status_code == 200, started.text
        code = await read_code(client, phone)
        guesses = [await client.post("/v1/auth/phone/verify", headers=STRANGER,
                                     json={"challenge_id": started.json()["challenge_id"], "code": wrong(code)})
                   for _ in range(MAX_FAILURES)]
        # Even the right code, from the stranger's address, is refused now.
        locked = await client.post("/v1/auth/phone/verify", headers=STRANGER,
                                   json={"challenge_id": started.json()["challenge_id"], "code": code})

        # The owner asks for a code and signs in, as if nothing happened.
        mine = await client.post("/v1/auth/phone/codes", json={"phone": phone}, headers=OWNER)
        assert mine.status_code == 200, mine.text
        own_code = await eventually(lambda: newer_code(client, phone, code))
        signed = await client.post("/v1/auth/phone/verify", headers=OWNER,
                                   json={"challenge_id": mine.json()["challenge_id"], "code": own_code})
    assert [g.status_code for g in guesses] == [401] * MAX_FAILURES
    assert {g.json()["code"] for g in guesses} == {"CODE_INVALID"}
    assert locked.status_code == 429 and locked.json()["code"] == "CODE_LOCKED", locked.text
    assert int(locked.headers["Retry-After"]) > 0
    assert signed.status_code == 200, signed.text
    assert signed.json()["user"]["phone"] == phone
