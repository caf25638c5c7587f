"""The whole stack as processes (the same ones `make run` starts), on free ports, with fresh
databases (PostgreSQL or SQLite by backend) and real Redis (or none in embedded mode)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from scripts.stack import Process, Stack, free_port, processes

SERVICES = ("identity", "tracking", "ledger", "redemption")
# Every test here comes from 127.0.0.1, runs after run share one Redis, and the fuzz run sends
# thousands of requests: per-address limits (the gateway's, and identity's on SMS codes; both
# tested on their own) are out of the way.
GENEROUS_LIMITS = {"GATEWAY_RATE_LIMIT_PER_ADDRESS": "1000000", "GATEWAY_RATE_LIMIT_PER_USER": "1000000",
                   "IDENTITY_ADDRESS_CODES_PER_HOUR": "0", "TRACKING_REFUSED_POSTBACKS_PER_MINUTE": "0"}
DIRECT_SECRET = "dev-direct-secret"


@dataclass
class RunningStack:
    stack: Stack
    gateway_url: str
    billing_url: str
    log_dir: str
    web_url: str = ""


async def start_private_stack(new_database, redis_url: str, log_dir: str, *,
                              overrides: dict[str, dict[str, str]] | None = None,
                              env: dict[str, str] | None = None) -> tuple[Stack, dict[str, int], dict[str, Process]]:
    """The processes of `make run` on free ports with fresh databases, `overrides` adding variables per
    process; started and healthy (logs dumped if not). The caller stops it."""
    ports = {name: free_port() for name in (*SERVICES, "gateway", "billing", "web")}
    databases = {service: await new_database(service) for service in SERVICES}
    procs = [dataclasses.replace(p, env={**p.env, **(overrides or {}).get(p.name, {})})
             for p in processes(ports, databases=databases, redis_url=redis_url, accrual_delay_seconds=0)]
    running = Stack(procs, env={"CASHBACK_ENV": "dev", **(env or {})}, log_dir=log_dir)
    try:
        await running.start()
    except Exception:
        await running.stop()
        _dump_logs(log_dir)
        raise
    return running, ports, {p.name: p for p in procs}


@pytest.fixture(scope="session")
async def stack(new_database, redis_url, tmp_path_factory) -> AsyncIterator[RunningStack]:
    log_dir = str(tmp_path_factory.mktemp("stack-logs"))
    running, ports, _ = await start_private_stack(new_database, redis_url, log_dir, env=GENEROUS_LIMITS)
    yield RunningStack(running, f"http://127.0.0.1:{ports['gateway']}", f"http://127.0.0.1:{ports['billing']}",
                       log_dir, f"http://127.0.0.1:{ports['web']}")
    await running.stop()


def _dump_logs(log_dir: str) -> None:
    import pathlib

    for path in sorted(pathlib.Path(log_dir).glob("*.log")):
        print(f"----- {path.name} (last lines) -----")
        print("\n".join(path.read_text(errors="replace").splitlines()[-40:]))


@pytest.fixture
async def http(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=15) as client:
        yield client


def sign_direct(body: bytes, secret: str = DIRECT_SECRET, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def direct_postback(**fields: object) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(fields, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json", "X-Cashback-Signature": sign_direct(body)}


async def port_in(billing_url: str, phone: str, subscriber: bool = True) -> None:
    """Number portability at the fake billing: `phone` becomes (or stops being) the operator's."""
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{billing_url}/control/subscribers", json={"phone": phone, "subscriber": subscriber})
        reply.raise_for_status()


async def read_code(http: httpx.AsyncClient, to: str) -> str:
    """The newest 6-digit code sent to `to` (delivery is asynchronous: bounded polling)."""
    for _ in range(100):
        reply = await http.get("/dev/outbox", params={"to": to})
        reply.raise_for_status()
        for message in reply.json()["messages"]:
            found = re.search(r"\b(\d{6})\b", message["text"])
            if found:
                return found.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no code sent to {to}")


async def sign_up(http: httpx.AsyncClient, phone: str, referral_code: str | None = None) -> dict:
    started = await http.post("/v1/auth/phone/codes", json={"phone": phone})
    assert started.status_code == 200, started.text
    body = {"challenge_id": started.json()["challenge_id"], "code": await read_code(http, phone)}
    if referral_code:
        body["referral_code"] = referral_code
    verified = await http.post("/v1/auth/phone/verify", json=body)
    assert verified.status_code == 200, verified.text
    return verified.json()
