"""Point 4: the postback route cannot be flooded or poisoned without credentials. Refused postbacks
are limited per client address before anything is stored (429 past the budget); what is stored is
bounded and redacted (no secret, signature, credential or cookie); over-long request lines and
headers are refused (414/431); and big refused requests arriving together never fail a good one
(the gateway's batches are bounded in bytes)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from services.common.db import Database
from services.tracking.models import Postback
from tests.e2e.conftest import GENEROUS_LIMITS, direct_postback, start_private_stack

pytestmark = pytest.mark.e2e
BUDGET = 10  # refused postbacks stored per address and minute, in this stack


@pytest.fixture(scope="module")
async def flood_stack(new_database, redis_url, tmp_path_factory) -> AsyncIterator[tuple[str, str]]:
    """Behind a trusted proxy (so each test picks its client address) with a small refusal budget."""
    running, ports, procs = await start_private_stack(
        new_database, redis_url, str(tmp_path_factory.mktemp("flood-logs")),
        env={**GENEROUS_LIMITS, "TRACKING_REFUSED_POSTBACKS_PER_MINUTE": str(BUDGET)},
        overrides={"gateway": {"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"}})
    try:
        yield f"http://127.0.0.1:{ports['gateway']}", procs["tracking"].env["TRACKING_DATABASE_URL"]
    finally:
        await running.stop()


def address() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}"


async def stored(database_url: str, remote_address: str) -> list[Postback]:
    db = Database(database_url)
    try:
        async with db.sessions() as session:
            return list((await session.scalars(select(Postback).where(
                Postback.remote_address == remote_address))).all())
    finally:
        await db.dispose()


async def test_refused_postbacks_are_stored_redacted_and_bounded(flood_stack):
    gateway, database_url = flood_stack
    source = address()
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        form = "order_id=1&status=approved&order_sum=100&secret=guessed-secret-123&padding=" + "x" * 40_000
        reply = await http.post("/v1/postbacks/admitad?secret=another-guess-456", content=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer stolen-token-789",
            "Cookie": "cashback_access=session-cookie-000", "X-Forwarded-For": source})
        assert (reply.status_code, reply.json()["code"]) == (401, "SIGNATURE_INVALID")
    [row] = await stored(database_url, source)
    everything = row.query_string + row.headers_json + row.body.decode()
    for secret in ("guessed-secret-123", "another-guess-456", "stolen-token-789", "session-cookie-000"):
        assert secret not in everything
    assert "secret=****" in row.query_string and "secret=****" in row.body.decode()
    headers = json.loads(row.headers_json)
    assert headers["authorization"] == headers["cookie"] == "****"
    assert len(row.body) <= 2048


async def test_a_flood_of_refused_postbacks_from_one_address_is_limited_before_anything_is_stored(flood_stack):
    gateway, database_url = flood_stack
    flooder, partner = address(), address()
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        answers = Counter()
        for _ in range(3 * BUDGET):
            reply = await http.post("/v1/postbacks/direct", content=b'{"order_id":"x"}', headers={
                "Content-Type": "application/json", "X-Forwarded-For": flooder})
            answers[(reply.status_code, reply.json()["code"])] += 1
            if reply.status_code == 429:
                assert int(reply.headers["Retry-After"]) > 0
        assert answers == {(401, "SIGNATURE_INVALID"): BUDGET, (429, "RATE_LIMITED"): 2 * BUDGET}
        assert len(await stored(database_url, flooder)) == BUDGET
        # A partner at another address is not held up by it.
        body, headers = direct_postback(order_id=f"OK-{uuid.uuid4().hex[:8]}", status="pending",
                                        amount_kopecks=10_000, currency="RUB")
        good = await http.post("/v1/postbacks/direct", content=body, headers={**headers, "X-Forwarded-For": partner})
        assert good.status_code == 200, good.text


async def test_big_refused_requests_arriving_together_never_fail_a_good_one(flood_stack):
    gateway, _ = flood_stack
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits) as http:
        junk = b'{"padding":"' + b"x" * (63 * 1024) + b'"}'

        async def bad(i: int) -> int:
            return (await http.post("/v1/postbacks/direct", content=junk, headers={
                "Content-Type": "application/json", "X-Forwarded-For": f"203.0.113.{i % 250 + 1}"})).status_code

        async def good(i: int) -> httpx.Response:
            body, headers = direct_postback(order_id=f"GOOD-{uuid.uuid4().hex[:8]}-{i}", status="pending",
                                            amount_kopecks=10_000, currency="RUB", event_time=int(time.time()))
            return await http.post("/v1/postbacks/direct", content=body, headers={**headers,
                                                                                   "X-Forwarded-For": address()})

        results = await asyncio.gather(*(bad(i) for i in range(150)), *(good(i) for i in range(20)))
        bad_codes, good_replies = results[:150], results[150:]
        assert set(bad_codes) <= {401, 429}
        refused = [r.text for r in good_replies if r.status_code != 200]
        assert not refused, refused


async def test_over_long_request_lines_and_headers_are_refused(flood_stack):
    gateway, _ = flood_stack
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        long_query = await http.get("/v1/postbacks/admitad", params={"order_id": "1", "junk": "x" * 9000})
        assert (long_query.status_code, long_query.json()["code"]) == (414, "URI_TOO_LONG")
        big_headers = await http.get("/v1/postbacks/admitad", headers={f"x-junk-{i}": "y" * 1000 for i in range(20)})
        assert (big_headers.status_code, big_headers.json()["code"]) == (431, "HEADERS_TOO_LARGE")
