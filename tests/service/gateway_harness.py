"""Runs the gateway in-process (its lifespan included) in front of real services."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import Settings


def closed_address() -> str:
    """An address where nothing listens (a port just released by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


def gateway_settings(**overrides: Any) -> Settings:
    kwargs: dict[str, Any] = {
        "env": "dev", "redis_url": "off", "rpc_deadline_seconds": 2.0, "readiness_timeout_seconds": 0.5,
        **Settings.dev_keys(),
    }
    for name in ("identity", "tracking", "ledger", "redemption"):
        kwargs[f"{name}_address"] = closed_address()
    kwargs.update(overrides)
    return Settings(**kwargs)


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, *, client_host: str = "127.0.0.1",
                          app: FastAPI | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = app or create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield client
