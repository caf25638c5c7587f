"""Start any of our services for real: a grpc.aio server on an ephemeral port, a fresh database
(PostgreSQL or SQLite by backend), real Redis (or none in embedded mode).

    ledger = await start_service("ledger")
    tracking = await start_service("tracking", ledger_address=ledger.address)
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from services.common.clock import Clock
from services.common.grpc_server import RunningService, start
from tests.service.tracking_harness import tracking_stack  # noqa: F401 - the `stack` fixture of tracking tests


class Started:
    def __init__(self, running: RunningService, settings: Any) -> None:
        self.running = running
        self.settings = settings
        self.port = running.port
        self.address = f"127.0.0.1:{running.port}"

    async def stop(self, grace: float = 0) -> None:
        await self.running.stop(grace)


StartService = Callable[..., Awaitable[Started]]


@pytest.fixture
async def start_service(new_database: Any, redis_url: str) -> AsyncIterator[StartService]:
    started: list[Started] = []

    async def _start(name: str, clock: Clock | None = None, **overrides: Any) -> Started:
        app = importlib.import_module(f"services.{name}.app")
        config = importlib.import_module(f"services.{name}.config")
        fields = {f.name for f in dataclasses.fields(config.Settings)}
        kwargs: dict[str, Any] = {"port": 0, "env": "dev"}
        if "database_url" not in overrides:
            kwargs["database_url"] = await new_database(name)
        if "redis_url" in fields:
            kwargs["redis_url"] = redis_url
        kwargs.update(overrides)
        settings = config.Settings(**kwargs)
        running = await start(await app.build_runtime(settings, clock), port=0)
        service = Started(running, settings)
        started.append(service)
        return service

    yield _start
    for service in reversed(started):
        if service.running.server is not None:
            await _stop(service)


async def _stop(service: Started, seconds: float = 60) -> None:
    """Stops a service, bounded: a stop that hangs (seen rarely, not yet explained) must not hang the
    whole run. The tasks still pending are printed with their stacks, to find out where it waits."""
    try:
        await asyncio.wait_for(service.stop(), seconds)
    except TimeoutError:
        print(f"\n{service.running.runtime.name} did not stop within {seconds:g} s; pending tasks:", file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
