"""Wiring: settings in, a runnable gRPC service out (used by __main__ and by the tests)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from cashback.tracking.v1 import tracking_pb2, tracking_pb2_grpc

from services.common.clock import Clock, SystemClock
from services.common.db import Database
from services.common.grpc_client import open_channel
from services.common.grpc_server import Runtime
from services.common.migrate import upgrade_async
from services.common.outbox import OutboxRelay
from services.common.redis_store import WindowCounters, connect_redis
from services.tracking.audit import AuditSpool
from services.tracking.config import Settings
from services.tracking.ingestion import RefusalBudget
from services.tracking.models import OutboxMessage
from services.tracking.service import Tracking
from services.tracking.servicer import TrackingServicer
from services.tracking.upstreams import (
    CREDIT_TOPIC,
    REVERSAL_TOPIC,
    SWEEP_TOPIC,
    CreditHandler,
    IdentityClient,
    LedgerClient,
    RedemptionClient,
    ReversalHandler,
    SweepHandler,
)

SERVICE_NAME = tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name


async def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    clock = clock or SystemClock()
    networks = settings.networks()  # refuses to start without secrets outside dev
    await upgrade_async("tracking", settings.database_url)
    db = Database(settings.database_url, local_ping=True)  # a transaction per postback: no ping round trips
    redis = await connect_redis(settings.redis_url)
    identity_channel = open_channel(settings.identity_address, caller="tracking")
    ledger_channel = open_channel(settings.ledger_address, caller="tracking")
    redemption_channel = (open_channel(settings.redemption_address, caller="tracking")
                          if settings.redemption_address else None)
    identity = IdentityClient(identity_channel)
    ledger = LedgerClient(ledger_channel)
    spool = AuditSpool(redis, db, prefix=settings.redis_prefix, database_url=settings.database_url,
                       batch=settings.audit_flush_batch)
    tracking = Tracking(
        db, clock, identity=identity, networks=networks, spool=spool,
        refusals=RefusalBudget(WindowCounters(redis, settings.redis_prefix), settings.refused_postbacks_per_minute),
        accrual_delay=timedelta(seconds=settings.accrual_delay_seconds),
        pending_expiry=timedelta(days=settings.pending_expiry_days),
        sweeps=redemption_channel is not None,
    )
    handlers = {
        CREDIT_TOPIC: CreditHandler(identity, ledger, settings.referral_bonus_kopecks),
        REVERSAL_TOPIC: ReversalHandler(identity, ledger),
    }
    if redemption_channel is not None:
        handlers[SWEEP_TOPIC] = SweepHandler(ledger, RedemptionClient(redemption_channel))
    relay = OutboxRelay(db, OutboxMessage, handlers, clock, lease=timedelta(seconds=settings.outbox_lease_seconds))
    tracking.set_relay(relay)
    await tracking.seed_catalogue(settings.catalogue_path)
    servicer = TrackingServicer(tracking)

    async def accrue_and_expire() -> None:
        """Credits confirmed purchases past the delay and expires old pending ones."""
        while True:
            tracking.work_due.clear()
            done = await tracking.lifecycle.accrue_due() + await tracking.lifecycle.expire_due()
            if done == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tracking.work_due.wait(), settings.job_interval_seconds)

    async def close() -> None:
        await identity_channel.close()
        await ledger_channel.close()
        if redemption_channel is not None:
            await redemption_channel.close()
        if redis is not None:
            await redis.aclose()
        await db.dispose()

    return Runtime(
        name="tracking",
        service_names=[SERVICE_NAME],
        register=lambda server: tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server),
        background=[relay.run, accrue_and_expire, spool.run],
        close=close,
    )
