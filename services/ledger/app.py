"""Wiring: settings in, a runnable gRPC service out (used by __main__ and by the tests)."""

from __future__ import annotations

import asyncio

from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.clock import Clock, SystemClock
from services.common.db import Database
from services.common.grpc_server import Runtime
from services.common.migrate import upgrade_async
from services.ledger.config import Settings
from services.ledger.service import Ledger
from services.ledger.servicer import LedgerServicer

SERVICE_NAME = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name


async def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    clock = clock or SystemClock()
    await upgrade_async("ledger", settings.database_url)
    db = Database(settings.database_url, local_ping=True)  # every call checks out a connection
    ledger = Ledger(db, clock, group_commit_size=settings.group_commit_size,
                    group_commits_in_flight=settings.group_commits_in_flight)
    await ledger.ensure_system_accounts()
    servicer = LedgerServicer(ledger, settings.default_pending_timeout_seconds)

    async def expire_pending() -> None:
        while True:
            if await ledger.expire_due() == 0:
                await asyncio.sleep(settings.expiry_interval_seconds)

    return Runtime(
        name="ledger",
        service_names=[SERVICE_NAME],
        register=lambda server: ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, server),
        background=[expire_pending],
        close=db.dispose,
    )
