"""Tracking over real gRPC with the real identity and ledger, a real database and Redis: the harness
shared by the tracking service tests (`stack` fixture)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import grpc
import pytest
from cashback.identity.v1 import identity_pb2 as ipb
from cashback.identity.v1 import identity_pb2_grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from cashback.tracking.v1 import tracking_pb2 as pb
from cashback.tracking.v1 import tracking_pb2_grpc
from sqlalchemy import select

from services.common.clock import FrozenClock
from services.common.db import Database
from services.common.grpc_client import open_channel
from services.tracking.models import Postback
from services.tracking.postbacks import sign

DAY = timedelta(days=1)


class Stack:
    def __init__(self, tracking, identity, ledger, clock: FrozenClock, database_url: str) -> None:
        self.tracking = tracking
        self.identity = identity
        self.ledger = ledger
        self.clock = clock
        self.database_url = database_url

    # --- users and clicks --------------------------------------------------------------------

    async def sign_up(self, referral_code: str = "") -> ipb.User:
        phone = f"+7916{random.randrange(10**7):07d}"
        challenge = await self.identity.StartPhoneChallenge(ipb.StartPhoneChallengeRequest(
            phone=phone, client_address=f"10.1.{random.randrange(250)}.{random.randrange(250)}"))
        for _ in range(200):
            messages = (await self.identity.ListDevOutbox(ipb.ListDevOutboxRequest(to=phone))).messages
            if messages:
                break
            await asyncio.sleep(0.02)
        code = re.search(r"\b(\d{6})\b", messages[0].text).group(1)
        verified = await self.identity.VerifyPhoneChallenge(ipb.VerifyPhoneChallengeRequest(
            challenge_id=challenge.challenge_id, code=code, referral_code=referral_code))
        return verified.user

    async def click(self, user_id: str, partner: str = "aliexpress") -> str:
        return (await self.tracking.RecordClick(pb.RecordClickRequest(user_id=user_id, partner_id=partner))).click_id

    # --- postbacks ---------------------------------------------------------------------------

    def direct_request(self, *, secret: str = "dev-direct-secret", skew: timedelta = timedelta(0),
                       header: str | None = None, **fields) -> pb.IngestPostbackRequest:
        body = json.dumps({"currency": "RUB", "channel": "web", "customer_type": "individual",
                           "event_time": self.clock.now().isoformat(), **fields}).encode()
        signature = header if header is not None else sign(secret, int((self.clock.now() + skew).timestamp()), body)
        return pb.IngestPostbackRequest(network="direct", http_method="POST", body=body,
                                        headers={"x-cashback-signature": signature}, remote_address="198.51.100.7")

    async def direct(self, **kwargs) -> pb.IngestPostbackResponse:
        return await self.tracking.IngestPostback(self.direct_request(**kwargs))

    async def admitad(self, method: str = "GET", secret: str = "dev-admitad-secret",
                      **params) -> pb.IngestPostbackResponse:
        form = urlencode({**params, "secret": secret})
        if method == "GET":
            request = pb.IngestPostbackRequest(network="admitad", http_method="GET", query_string=form)
        else:
            request = pb.IngestPostbackRequest(network="admitad", http_method="POST", body=form.encode(),
                                               headers={"content-type": "application/x-www-form-urlencoded"})
        return await self.tracking.IngestPostback(request)

    # --- reading back ------------------------------------------------------------------------

    async def purchase(self, purchase_id: str) -> pb.Purchase:
        return (await self.tracking.GetPurchase(pb.GetPurchaseRequest(purchase_id=purchase_id))).purchase

    async def balance(self, user_id: str) -> int:
        return (await self.ledger.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user_id))).balance.posted_kopecks

    async def pending(self, user_id: str) -> int:
        return (await self.tracking.GetPendingCashback(
            pb.GetPendingCashbackRequest(user_id=user_id))).pending_cashback_kopecks

    async def wait_status(self, purchase_id: str, status: int) -> pb.Purchase:
        for _ in range(300):
            purchase = await self.purchase(purchase_id)
            if purchase.status == status:
                return purchase
            await asyncio.sleep(0.02)
        raise AssertionError(f"purchase {purchase_id} never reached {pb.PurchaseStatus.Name(status)}")

    async def wait_balance(self, user_id: str, kopecks: int) -> None:
        for _ in range(300):
            if await self.balance(user_id) == kopecks:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"balance of {user_id} is {await self.balance(user_id)}, not {kopecks}")

    async def wait_audit_rows(self, count: int, **where) -> list[Postback]:
        for _ in range(300):
            rows = await self.audit_rows(**where)
            if len(rows) >= count:
                assert len(rows) == count
                return rows
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(rows)} audit rows, not {count}")

    async def audit_rows(self, **where) -> list[Postback]:
        db = Database(self.database_url)
        try:
            async with db.sessions() as session:
                stmt = select(Postback).where(*(getattr(Postback, k) == v for k, v in where.items()))
                return list((await session.scalars(stmt.order_by(Postback.received_at))).all())
        finally:
            await db.dispose()


@pytest.fixture(name="stack")
async def tracking_stack(start_service):
    """Tracking with a frozen clock, the real identity and ledger (registered in conftest.py)."""
    clock = FrozenClock()
    ledger = await start_service("ledger")
    identity = await start_service("identity", redis_prefix=f"test-identity:{uuid.uuid4().hex}:")
    tracking = await start_service("tracking", clock=clock, ledger_address=ledger.address,
                                   identity_address=identity.address, job_interval_seconds=0.02,
                                   redis_prefix=f"test-tracking:{uuid.uuid4().hex}:")
    channels = [open_channel(s.address) for s in (tracking, identity, ledger)]
    yield Stack(tracking_pb2_grpc.TrackingServiceStub(channels[0]), identity_pb2_grpc.IdentityServiceStub(channels[1]),
                ledger_pb2_grpc.LedgerServiceStub(channels[2]), clock, tracking.settings.database_url)
    for channel in channels:
        await asyncio.wait_for(channel.close(), 30)  # bounded: a teardown never hangs the run


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def order() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"
