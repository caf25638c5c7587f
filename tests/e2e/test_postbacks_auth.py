"""Refused postbacks through the gateway: forged, unsigned, stale, future-dated and replayed ones are
never accepted, and every one of them is stored with its outcome."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from services.common.db import Database
from services.tracking.models import Postback
from tests.e2e.conftest import sign_direct

pytestmark = pytest.mark.e2e


async def stored(stack, order_id: str) -> list[Postback]:
    tracking = next(p for p in stack.stack.procs if p.name == "tracking")
    db = Database(tracking.env["TRACKING_DATABASE_URL"])
    try:
        async with db.sessions() as session:
            rows = (await session.scalars(select(Postback).order_by(Postback.received_at))).all()
    finally:
        await db.dispose()
    return [r for r in rows if order_id.encode() in r.body]


async def test_forged_unsigned_stale_future_and_replayed_postbacks_are_not_accepted_but_stored(
        http: httpx.AsyncClient, stack):
    order_id = f"AUTH-{uuid.uuid4().hex[:10]}"
    body = json.dumps({"order_id": order_id, "partner_id": "ozon", "status": "pending", "amount_kopecks": 90_000,
                       "currency": "RUB"}).encode()
    now = int(time.time())
    refused = {
        "forged": {"X-Cashback-Signature": sign_direct(body, secret="not-the-secret")},
        "unsigned": {},
        "stale": {"X-Cashback-Signature": sign_direct(body, at=now - 3600)},
        "future": {"X-Cashback-Signature": sign_direct(body, at=now + 3600)},
    }
    for name, headers in refused.items():
        reply = await http.post("/v1/postbacks/direct", content=body,
                                headers={"Content-Type": "application/json", **headers})
        assert reply.status_code == 401, (name, reply.text)
    signed = {"Content-Type": "application/json", "X-Cashback-Signature": sign_direct(body, at=now)}
    first = await http.post("/v1/postbacks/direct", content=body, headers=signed)
    replay = await http.post("/v1/postbacks/direct", content=body, headers=signed)
    assert first.status_code == 200 and first.json()["outcome"] == "UNATTRIBUTED"
    assert replay.status_code == 200 and replay.json()["outcome"] == "DUPLICATE"  # changes nothing
    assert replay.json()["purchase_id"] in (None, first.json()["purchase_id"])

    for _ in range(600):  # the replay's audit row may be spooled in Redis first
        rows = await stored(stack, order_id)
        if len(rows) >= 6:
            break
        await asyncio.sleep(0.05)
    refusals = sorted((r.outcome, r.detail) for r in rows if r.outcome == "UNAUTHENTICATED")
    assert refusals == [("UNAUTHENTICATED", "SIGNATURE_INVALID")] * 2 + [
        ("UNAUTHENTICATED", "TIMESTAMP_OUT_OF_WINDOW")] * 2, [(r.outcome, r.detail) for r in rows]
    assert sorted(r.outcome for r in rows if r.outcome != "UNAUTHENTICATED") == ["DUPLICATE", "UNATTRIBUTED"]
    assert all(r.body == body for r in rows)


async def test_concurrent_postbacks_each_get_their_own_answer_through_the_gateway(http: httpx.AsyncClient, stack):
    """The gateway sends postbacks that arrive together in one IngestPostbacks call: sent at once,
    forgeries, malformed ones and good ones still get each their own status and problem code."""
    now, run = int(time.time()), uuid.uuid4().hex[:8]

    def body(i: int, status: str = "pending") -> bytes:
        return json.dumps({"order_id": f"MIX-{run}-{i}", "partner_id": "ozon", "status": status,
                           "amount_kopecks": 10_000 + i, "currency": "RUB"}).encode()

    requests = []
    for i in range(60):
        kind = ("good", "forged", "malformed")[i % 3]
        raw = body(i, "paid" if kind == "malformed" else "pending")
        secret = "not-the-secret" if kind == "forged" else "dev-direct-secret"
        requests.append((kind, raw, {"Content-Type": "application/json",
                                     "X-Cashback-Signature": sign_direct(raw, at=now, secret=secret)}))
    replies = await asyncio.gather(*(http.post("/v1/postbacks/direct", content=raw, headers=headers)
                                     for _, raw, headers in requests))
    for (kind, _, _), reply in zip(requests, replies, strict=True):
        if kind == "good":
            assert reply.status_code == 200 and reply.json()["outcome"] == "UNATTRIBUTED", reply.text
        elif kind == "forged":
            assert reply.status_code == 401 and reply.json()["code"] == "SIGNATURE_INVALID", reply.text
        else:
            assert reply.status_code == 400 and reply.json()["code"] == "POSTBACK_MALFORMED", reply.text
    good = [r.json()["purchase_id"] for (kind, _, _), r in zip(requests, replies, strict=True) if kind == "good"]
    assert len(set(good)) == 20
