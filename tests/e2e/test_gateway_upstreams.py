"""The gateway when a service behind it is down or frozen, on a stack of its own (processes on free
ports, fresh databases; the shared session stack is never touched): a stopped process is a 503
(UNAVAILABLE, at once), a process frozen with SIGSTOP is a 504 when the gateway's deadline passes,
and after SIGCONT a retry with the same Idempotency-Key applies the order exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from scripts.stack import Process, Stack
from services.common.grpc_client import open_channel
from tests.e2e.conftest import sign_up, start_private_stack
from tests.polling import eventually

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 3
PROBLEM = "application/problem+json"


@dataclass
class OwnStack:
    stack: Stack
    gateway_url: str
    procs: dict[str, Process]
    ledger: ledger_pb2_grpc.LedgerServiceStub

    def child(self, name: str) -> asyncio.subprocess.Process:
        return self.stack.running[name]

    async def fund(self, user_id: str, amount: int) -> None:
        await self.ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
            transfer_id=f"cashback:{uuid.uuid4()}", kind=ledger_pb2.TRANSFER_KIND_CASHBACK, amount_kopecks=amount,
            debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
            credit_account=ledger_pb2.AccountRef(user_id=user_id))))


@pytest.fixture(scope="module")
async def own(new_database, redis_url, tmp_path_factory) -> AsyncIterator[OwnStack]:
    log_dir = str(tmp_path_factory.mktemp("gateway-upstreams-logs"))
    limits = {"GATEWAY_RPC_DEADLINE_SECONDS": str(DEADLINE_SECONDS), "GATEWAY_RATE_LIMIT_PER_ADDRESS": "0"}
    running, ports, by_name = await start_private_stack(new_database, redis_url, log_dir, overrides={
        "gateway": limits,
        "identity": {"IDENTITY_ADDRESS_CODES_PER_HOUR": "0"},  # every sign-up comes from 127.0.0.1
    })
    channel = open_channel(f"127.0.0.1:{ports['ledger']}")
    try:
        yield OwnStack(running, f"http://127.0.0.1:{ports['gateway']}", by_name,
                       ledger_pb2_grpc.LedgerServiceStub(channel))
    finally:
        for child in running.running.values():  # never leave a frozen process behind
            if child.returncode is None:
                child.send_signal(signal.SIGCONT)
        await channel.close()
        await running.stop()


@pytest.fixture
async def http(own: OwnStack) -> AsyncIterator[httpx.AsyncClient]:
    # The client waits far longer than the gateway's deadline: the answer is the gateway's, not a client timeout.
    async with httpx.AsyncClient(base_url=own.gateway_url, timeout=10 * DEADLINE_SECONDS) as client:
        yield client



def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == code, response.text
    assert "Traceback" not in response.text and "127.0.0.1" not in response.text


def phone() -> str:
    return f"+7903{random.randint(0, 9_999_999):07d}"


async def test_a_stopped_upstream_is_503_only_where_it_is_needed_and_heals_when_it_returns(own, http):
    user = await sign_up(http, phone())
    auth = {"Authorization": f"Bearer {user['access_token']}"}
    assert await own.stack.stop_one("tracking") == 0
    try:
        partners = await http.get("/v1/partners")
        balance = await http.get("/v1/me/balance", headers=auth)  # ledger and tracking: one down is enough
        me = await http.get("/v1/me", headers=auth)  # identity alone: unaffected
        ready = await http.get("/readyz")
    finally:
        await own.stack.start_one(own.procs["tracking"])
    assert_problem(partners, 503, "UNAVAILABLE")
    assert_problem(balance, 503, "UNAVAILABLE")
    assert me.status_code == 200, me.text
    assert ready.status_code == 503 and ready.json()["not_serving"] == ["tracking"]

    async def healed() -> bool:
        return (await http.get("/v1/partners")).status_code == 200
    await eventually(healed)


async def test_a_frozen_upstream_is_504_and_the_retry_after_sigcont_orders_once(own, http):
    user = await sign_up(http, phone())
    auth = {"Authorization": f"Bearer {user['access_token']}"}
    await own.fund(user["user"]["user_id"], 50_000)
    order = {"nominal_kopecks": 10_000}
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}

    redemption = own.child("redemption")
    redemption.send_signal(signal.SIGSTOP)
    try:
        frozen = await http.post("/v1/me/certificates", json=order, headers=headers)
        listing = await http.get("/v1/me/certificates", headers=auth)
    finally:
        redemption.send_signal(signal.SIGCONT)
    assert_problem(frozen, 504, "DEADLINE_EXCEEDED")
    assert_problem(listing, 504, "DEADLINE_EXCEEDED")

    async def retried() -> httpx.Response | None:
        reply = await http.post("/v1/me/certificates", json=order, headers=headers)
        return reply if reply.status_code in (200, 201) else None
    first = await eventually(retried)
    again = await http.post("/v1/me/certificates", json=order, headers=headers)
    assert again.status_code in (200, 201), again.text
    certificate_id = first.json()["certificate_id"]
    assert again.json()["certificate_id"] == certificate_id

    certificates = (await http.get("/v1/me/certificates", headers=auth)).json()["certificates"]
    assert [c["certificate_id"] for c in certificates] == [certificate_id]
    statement = (await http.get("/v1/me/statement", headers=auth)).json()["entries"]
    debits = [(e["transfer_id"], e["amount_kopecks"]) for e in statement if e["direction"] == "DEBIT"]
    assert debits == [(f"certificate:{certificate_id}", 10_000)]
    balance = (await http.get("/v1/me/balance", headers=auth)).json()
    assert balance["balance_kopecks"] == balance["available_kopecks"] == 40_000
