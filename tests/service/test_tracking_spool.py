"""Postback fast path and its audit spool (real Redis on both backends), and per-network IP
allow-lists, over real gRPC with a real database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
from cashback.tracking.v1 import tracking_pb2 as pb
from cashback.tracking.v1 import tracking_pb2_grpc
from sqlalchemy import func, select

from services.common.db import Database
from services.common.grpc_client import error_info, open_channel
from services.tracking.audit import audit_record
from services.tracking.models import Postback
from services.tracking.postbacks import sign
from services.tracking.repository import insert_postbacks_once


def direct_request(order_id: str, remote: str = "198.51.100.7") -> pb.IngestPostbackRequest:
    body = json.dumps({"order_id": order_id, "partner_id": "ozon", "status": "pending", "amount_kopecks": 70_000,
                       "currency": "RUB"}).encode()
    return pb.IngestPostbackRequest(network="direct", http_method="POST", body=body, remote_address=remote,
                                    headers={"x-cashback-signature": sign("dev-direct-secret", int(time.time()), body)})


async def audit_rows(database_url: str, order_id: str) -> list[Postback]:
    db = Database(database_url)
    try:
        async with db.sessions() as session:
            return list((await session.scalars(select(Postback).where(Postback.order_id == order_id))).all())
    finally:
        await db.dispose()


async def start_tracking(start_service, **overrides):
    tracking = await start_service("tracking", ledger_address="127.0.0.1:1", identity_address="127.0.0.1:1",
                                   redis_prefix=f"test-tracking:{uuid.uuid4().hex}:", **overrides)
    return tracking, open_channel(tracking.address)


async def test_postbacks_from_outside_the_allow_list_are_unauthenticated_and_stored(start_service):
    tracking, channel = await start_tracking(start_service, direct_allowed_ips="10.9.0.0/16, 192.0.2.7")
    stub = tracking_pb2_grpc.TrackingServiceStub(channel)
    order_id = f"order-{uuid.uuid4().hex[:10]}"
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.IngestPostback(direct_request(order_id, remote="198.51.100.7"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(refused.value).reason == "ADDRESS_NOT_ALLOWED"
        accepted = await stub.IngestPostback(direct_request(order_id, remote="10.9.3.4"))
        assert accepted.outcome == pb.POSTBACK_OUTCOME_UNATTRIBUTED
    finally:
        await channel.close()
    rows = sorted(await audit_rows(tracking.settings.database_url, ""), key=lambda r: r.received_at)
    assert [(r.outcome, r.detail, r.remote_address) for r in rows] == [
        ("UNAUTHENTICATED", "ADDRESS_NOT_ALLOWED", "198.51.100.7")]
    assert [r.outcome for r in await audit_rows(tracking.settings.database_url, order_id)] == ["UNATTRIBUTED"]


class DatabaseLock:
    """Another client holding an exclusive lock: no SQL of tracking's gets through meanwhile."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def __aenter__(self) -> DatabaseLock:
        if self.url.startswith("postgresql"):
            self._pg = await asyncpg.connect(self.url.replace("postgresql+asyncpg://", "postgresql://"))
            await self._pg.execute("BEGIN; LOCK TABLE postbacks, purchases IN ACCESS EXCLUSIVE MODE")
        else:
            # In a thread: the service runs in this event loop and may hold a write transaction that
            # needs the loop to finish; waiting for the lock here, on the loop, would stall it.
            self._sqlite = await asyncio.to_thread(self._sqlite_exclusive, self.url.split("///", 1)[1])
        return self

    @staticmethod
    def _sqlite_exclusive(path: str) -> sqlite3.Connection:
        connection = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        connection.execute("BEGIN EXCLUSIVE")
        return connection

    async def __aexit__(self, *exc: object) -> None:
        if self._pg is not None:
            await self._pg.execute("ROLLBACK")
            await self._pg.close()
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()


async def test_exact_duplicates_are_answered_without_sql_and_their_audit_rows_follow(start_service, real_redis_url):
    tracking, channel = await start_tracking(start_service, redis_url=real_redis_url)
    stub = tracking_pb2_grpc.TrackingServiceStub(channel)
    order_id = f"order-{uuid.uuid4().hex[:10]}"
    try:
        request = direct_request(order_id)
        first = await stub.IngestPostback(request)
        assert first.outcome == pb.POSTBACK_OUTCOME_UNATTRIBUTED
        async with DatabaseLock(tracking.settings.database_url):
            copies = await asyncio.gather(*(stub.IngestPostback(request, timeout=20) for _ in range(20)))
        assert {c.outcome for c in copies} == {pb.POSTBACK_OUTCOME_DUPLICATE}
        assert len({c.postback_id for c in copies}) == 20
    finally:
        await channel.close()
    for _ in range(300):  # the spool is flushed in the background
        rows = await audit_rows(tracking.settings.database_url, order_id)
        if len(rows) >= 21:
            break
        await asyncio.sleep(0.05)
    assert sorted(r.outcome for r in rows) == ["DUPLICATE"] * 20 + ["UNATTRIBUTED"]
    assert {r.id for r in rows} >= {c.postback_id for c in copies}
    assert all(r.body == request.body for r in rows)


async def test_a_redelivered_spool_batch_is_stored_once(start_service):
    tracking, channel = await start_tracking(start_service)
    await channel.close()
    row = audit_record(postback_id=str(uuid.uuid4()), network="direct", http_method="POST", query_string="",
                       body=b"{}", headers={"x-a": "b"}, remote_address="192.0.2.1", received_at=datetime.now(UTC),
                       outcome="DUPLICATE", detail="fingerprint seen", fingerprint="f" * 64, order_id="o-1",
                       part_id="")
    db = Database(tracking.settings.database_url)
    try:
        for _ in range(2):
            async with db.transaction() as session:
                await insert_postbacks_once(session, [row])
        async with db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Postback).where(
                Postback.id == row["id"])) == 1
    finally:
        await db.dispose()
