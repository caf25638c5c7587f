"""Wiring: settings in, a runnable gRPC service out (used by __main__ and by the tests)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cashback.redemption.v1 import redemption_pb2, redemption_pb2_grpc

from services.common.clock import Clock, SystemClock
from services.common.config import require_outside_dev
from services.common.db import Database
from services.common.grpc_client import open_channel
from services.common.grpc_server import Runtime
from services.common.migrate import upgrade_async
from services.common.outbox import OutboxRelay
from services.redemption.billing import HttpBilling
from services.redemption.config import DEV_BILLING_URL, Settings
from services.redemption.models import OutboxMessage
from services.redemption.service import NOTIFICATION_TOPIC, Redemption
from services.redemption.servicer import RedemptionServicer
from services.redemption.upstreams import IdentityClient, LedgerClient

SERVICE_NAME = redemption_pb2.DESCRIPTOR.services_by_name["RedemptionService"].full_name


async def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    clock = clock or SystemClock()
    require_outside_dev(settings.env, "REDEMPTION_BILLING_URL", settings.billing_url, DEV_BILLING_URL)
    await upgrade_async("redemption", settings.database_url)
    db = Database(settings.database_url)
    identity_channel = open_channel(settings.identity_address, caller="redemption")
    ledger_channel = open_channel(settings.ledger_address, caller="redemption")
    billing = HttpBilling(settings.billing_url, settings.billing_timeout_seconds)
    relay_holder: list[OutboxRelay] = []
    redemption = Redemption(
        db, clock, LedgerClient(ledger_channel), IdentityClient(identity_channel), billing,
        hold_timeout_seconds=settings.hold_timeout_seconds, claim_lease_seconds=settings.claim_lease_seconds,
        reconcile_interval_seconds=settings.reconcile_interval_seconds,
        on_enqueued=lambda: relay_holder[0].wake(),
    )
    relay = OutboxRelay(db, OutboxMessage, {NOTIFICATION_TOPIC: redemption.deliver_notification}, clock,
                        lease=timedelta(seconds=settings.claim_lease_seconds))
    relay_holder.append(relay)
    servicer = RedemptionServicer(redemption)

    async def reconcile() -> None:
        while True:
            if await redemption.reconcile_once() == 0:
                await asyncio.sleep(settings.reconcile_interval_seconds)

    async def close() -> None:
        await billing.close()
        await identity_channel.close()
        await ledger_channel.close()
        await db.dispose()

    return Runtime(
        name="redemption",
        service_names=[SERVICE_NAME],
        register=lambda server: redemption_pb2_grpc.add_RedemptionServiceServicer_to_server(servicer, server),
        background=[relay.run, reconcile],
        close=close,
    )
