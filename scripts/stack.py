"""The local stack as processes: what runs, with which variables, and a supervisor that starts
it, waits until every part is healthy, and stops it cleanly. Used by `make run`, by the
end-to-end tests, and by the test that keeps docker-compose.yml in step with it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import ROOT


@dataclass(frozen=True)
class Process:
    name: str
    module: str  # run as `python -m <module>`
    port: int
    kind: str  # "grpc" | "http"
    # Variables this process reads (beyond CASHBACK_ENV, LOG_LEVEL), with the values `make run` gives.
    env: Mapping[str, str] = field(default_factory=dict)


DEFAULT_STACK_PORTS = {"identity": 50051, "tracking": 50052, "ledger": 50053, "redemption": 50054,
                       "gateway": 8080, "billing": 8090, "web": 8000}


def processes(ports: Mapping[str, int] | None = None, *, databases: Mapping[str, str] | None = None,
              redis_url: str | None = None, accrual_delay_seconds: int = 0) -> list[Process]:
    """The stack. `ports` and `databases` override the defaults (tests use free ports and fresh
    databases); without `databases` each service uses its SQLite file under var/."""
    p = {**DEFAULT_STACK_PORTS, **(ports or {})}
    addr = {name: f"127.0.0.1:{p[name]}" for name in ("identity", "tracking", "ledger", "redemption")}

    def db(service: str) -> dict[str, str]:
        url = (databases or {}).get(service)
        return {f"{service.upper()}_DATABASE_URL": url} if url else {}

    redis = {"REDIS_URL": redis_url} if redis_url is not None else {}
    return [
        Process("billing", "fakes.billing", p["billing"], "http", {"BILLING_PORT": str(p["billing"])}),
        Process("ledger", "services.ledger", p["ledger"], "grpc", {"LEDGER_PORT": str(p["ledger"]), **db("ledger")}),
        Process("identity", "services.identity", p["identity"], "grpc",
                {"IDENTITY_PORT": str(p["identity"]), **db("identity"), **redis}),
        Process("tracking", "services.tracking", p["tracking"], "grpc",
                {"TRACKING_PORT": str(p["tracking"]), **db("tracking"), **redis,
                 "TRACKING_IDENTITY_ADDRESS": addr["identity"], "TRACKING_LEDGER_ADDRESS": addr["ledger"],
                 "TRACKING_REDEMPTION_ADDRESS": addr["redemption"],
                 "TRACKING_ACCRUAL_DELAY_SECONDS": str(accrual_delay_seconds)}),
        Process("redemption", "services.redemption", p["redemption"], "grpc",
                {"REDEMPTION_PORT": str(p["redemption"]), **db("redemption"),
                 "REDEMPTION_IDENTITY_ADDRESS": addr["identity"], "REDEMPTION_LEDGER_ADDRESS": addr["ledger"],
                 "REDEMPTION_BILLING_URL": f"http://127.0.0.1:{p['billing']}"}),
        Process("gateway", "gateway", p["gateway"], "http",
                {"GATEWAY_PORT": str(p["gateway"]), **redis,
                 **{f"GATEWAY_{s.upper()}_ADDRESS": a for s, a in addr.items()}}),
        Process("web", "web", p["web"], "http",
                {"WEB_PORT": str(p["web"]), "WEB_GATEWAY_URL": f"http://127.0.0.1:{p['gateway']}",
                 "WEB_PUBLIC_GATEWAY_URL": f"http://127.0.0.1:{p['gateway']}"}),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _grpc_serving(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            return False


async def _http_ready(port: int, path: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(f"http://127.0.0.1:{port}{path}")).status_code == 200
    except httpx.HTTPError:
        return False


class Stack:
    """Starts the processes in order, each once the previous ones are healthy."""

    def __init__(self, procs: list[Process], *, env: Mapping[str, str] | None = None,
                 log_dir: str | None = None) -> None:
        self.procs = procs
        self.base_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
                         "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_dir = log_dir
        self.running: dict[str, asyncio.subprocess.Process] = {}
        self._logs: list[Any] = []

    async def start_one(self, proc: Process, timeout: float = 60) -> None:
        await self.spawn(proc)
        await self.wait_healthy(proc, timeout)

    async def spawn(self, proc: Process) -> asyncio.subprocess.Process:
        """Starts the process without waiting for it to be healthy (the supervisor of `make run`
        restarts a process this way, then waits for it with `alive_only`)."""
        out = None
        if self.log_dir is not None:
            out = open(os.path.join(self.log_dir, f"{proc.name}.log"), "ab")  # noqa: ASYNC230, SIM115
        if out is not None:
            self._logs.append(out)
        self.running[proc.name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", proc.module, cwd=str(ROOT), env={**self.base_env, **proc.env},
            stdout=out, stderr=asyncio.subprocess.STDOUT if out is not None else None,
        )
        return self.running[proc.name]

    async def wait_healthy(self, proc: Process, timeout: float = 60, *, alive_only: bool = False) -> None:
        """Until the process answers its health check: SERVING for a gRPC service; for the
        gateway, /readyz (every upstream SERVING), or /healthz with `alive_only`."""
        deadline = time.monotonic() + timeout
        ready_path = "/readyz" if proc.name == "gateway" and not alive_only else "/healthz"
        while time.monotonic() < deadline:
            child = self.running[proc.name]
            if child.returncode is not None:
                raise RuntimeError(f"{proc.name} exited with code {child.returncode} while starting")
            ok = await (_grpc_serving(proc.port) if proc.kind == "grpc" else _http_ready(proc.port, ready_path))
            if ok:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{proc.name} not healthy on port {proc.port} after {timeout:.0f} s")

    async def start(self) -> None:
        for proc in self.procs:
            await self.start_one(proc)

    async def stop_one(self, name: str, grace: float = 15) -> int | None:
        child = self.running.pop(name, None)
        if child is None or child.returncode is not None:
            return None if child is None else child.returncode
        child.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(child.wait(), grace)
        except TimeoutError:
            child.kill()
            return await child.wait()

    async def stop(self) -> None:
        for proc in reversed(self.procs):
            await self.stop_one(proc.name)
        for f in self._logs:
            with contextlib.suppress(Exception):
                f.close()

    async def wait_any_exit(self) -> str:
        waits = {asyncio.create_task(child.wait()): name for name, child in self.running.items()}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[next(iter(done))]
