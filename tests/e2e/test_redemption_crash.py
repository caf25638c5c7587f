"""Kill -9 of the redemption process in the middle of mobile payments, on a stack of its own
(processes on free ports, fresh databases), driven through the gateway.

The fake billing makes the timing deterministic: in mode `hang` it receives a top-up and holds it
unapplied until released (the crash falls between the hold and the top-up); in `apply_then_hang`
it applies the top-up and holds the answer (the crash falls between the top-up and the post). The
test kills redemption while billing holds the requests, lets billing decide, restarts redemption
and checks that every payment is settled exactly once: billing applied it at most once, the
ledger posted the hold if and only if billing applied it, balances are right, the audit passes."""

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

# Short enough for a restarted process to take over quickly, long enough that the process under
# test does not take over its own request before it is killed.
LEASE_SECONDS = 6


@dataclass
class CrashStack:
    stack: Stack
    gateway_url: str
    billing_url: str
    ledger: ledger_pb2_grpc.LedgerServiceStub
    redemption: Process
    log_dir: str

    async def kill_redemption(self) -> None:
        child = self.stack.running["redemption"]
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL

    async def restart_redemption(self) -> None:
        await self.stack.start_one(self.redemption)

    async def billing(self, path: str, **body: object) -> dict:
        async with httpx.AsyncClient(base_url=self.billing_url, timeout=10) as client:
            response = await (client.post(path, json=body) if body or path.startswith("/control/")
                              else client.get(path))
            response.raise_for_status()
            return response.json()

    async def mode(self, mode: str) -> None:
        await self.billing("/control", mode=mode)

    async def held(self) -> list[str]:
        return (await self.billing("/control"))["held"]

    async def credited(self, phone: str) -> int:
        return (await self.billing(f"/v1/accounts/{phone}"))["credited_kopecks"]

    async def fund(self, user_id: str, amount: int) -> None:
        await self.ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
            transfer_id=f"cashback:{uuid.uuid4()}", kind=ledger_pb2.TRANSFER_KIND_CASHBACK, amount_kopecks=amount,
            debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
            credit_account=ledger_pb2.AccountRef(user_id=user_id))))

    async def hold_state(self, payment_id: str) -> str:
        reply = await self.ledger.GetTransfer(ledger_pb2.GetTransferRequest(transfer_id=f"mobile-payment:{payment_id}"))
        return ledger_pb2.TransferState.Name(reply.transfer.state).removeprefix("TRANSFER_STATE_")

    async def assert_audit_ok(self) -> None:
        audit = await self.ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())
        assert audit.ok, audit.violations


@pytest.fixture(scope="module")
async def crash(new_database, redis_url, tmp_path_factory) -> AsyncIterator[CrashStack]:
    log_dir = str(tmp_path_factory.mktemp("crash-stack-logs"))
    running, ports, by_name = await start_private_stack(new_database, redis_url, log_dir, overrides={
        "redemption": {"REDEMPTION_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
                       "REDEMPTION_RECONCILE_INTERVAL_SECONDS": "0.2",
                       # Longer than any test waits: only the kill ends a call that billing holds.
                       "REDEMPTION_BILLING_TIMEOUT_SECONDS": "120"},
        # calls that billing holds end with the kill, not with a deadline
        "gateway": {"GATEWAY_RPC_DEADLINE_SECONDS": "60", "GATEWAY_RATE_LIMIT_PER_ADDRESS": "0"},
        "identity": {"IDENTITY_ADDRESS_CODES_PER_HOUR": "0"},  # every sign-up comes from 127.0.0.1
    })
    channel = open_channel(f"127.0.0.1:{ports['ledger']}")
    try:
        yield CrashStack(running, f"http://127.0.0.1:{ports['gateway']}", f"http://127.0.0.1:{ports['billing']}",
                         ledger_pb2_grpc.LedgerServiceStub(channel),
                         by_name["redemption"], log_dir)
    finally:
        await channel.close()
        await running.stop()



@dataclass
class Payer:
    phone: str
    auth: dict[str, str]
    key: str
    amount: int
    call: asyncio.Future[httpx.Response] | None = None
    payment_id: str = ""


async def new_payer(http: httpx.AsyncClient, crash: CrashStack, funded: int, amount: int) -> Payer:
    phone = f"+7982{random.randint(0, 9_999_999):07d}"  # the operator's (MTS): its bill can be paid
    signed = await sign_up(http, phone)
    await crash.fund(signed["user"]["user_id"], funded)
    return Payer(phone, {"Authorization": f"Bearer {signed['access_token']}"}, str(uuid.uuid4()), amount)


async def start_payment_held_by_billing(http: httpx.AsyncClient, crash: CrashStack, payer: Payer) -> None:
    """Sends the payment through the gateway and waits until billing holds its top-up: by then
    redemption has taken the ledger hold and is waiting for billing's answer."""
    before = set(await crash.held())
    payer.call = asyncio.ensure_future(http.post(
        "/v1/me/mobile-payments", json={"amount_kopecks": payer.amount},
        headers={**payer.auth, "Idempotency-Key": payer.key}))

    async def newly_held() -> list[str]:
        return [t for t in await crash.held() if t not in before]

    [payer.payment_id] = await eventually(newly_held)
    assert await crash.hold_state(payer.payment_id) == "PENDING"


async def settled(http: httpx.AsyncClient, payer: Payer) -> dict:
    async def probe() -> dict | None:
        reply = await http.get("/v1/me/mobile-payments", headers=payer.auth)
        if reply.status_code == 503:  # the gateway's channel has not reconnected to the new process yet
            return None
        assert reply.status_code == 200, reply.text
        listed = reply.json()["payments"]
        assert [p["payment_id"] for p in listed] == [payer.payment_id]  # one payment per key, ever
        return listed[0] if listed[0]["status"] != "PROCESSING" else None

    return await eventually(probe)


async def balance(http: httpx.AsyncClient, payer: Payer) -> dict:
    reply = await http.get("/v1/me/balance", headers=payer.auth)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def kill_while_billing_holds(http: httpx.AsyncClient, crash: CrashStack, payers: list[Payer]) -> None:
    await crash.kill_redemption()
    for payer in payers:  # the crash left the work half done; the clients see a clean 503, never a 500
        assert await crash.hold_state(payer.payment_id) == "PENDING"
        assert payer.call is not None
        answer = await payer.call
        assert answer.status_code in (503, 504), answer.text
        assert answer.json()["code"]
    down = await http.get("/v1/me/mobile-payments", headers=payers[0].auth)
    assert down.status_code == 503, down.text


async def test_kill_between_the_hold_and_the_top_up(crash: CrashStack):
    """Three payments are held by billing (received, not applied) when redemption dies. Billing
    then applies the first, refuses the second, and loses the third (as if it had never been
    sent). After the restart: the first is posted, the second voided, the third sent again and
    posted — each exactly once."""
    async with httpx.AsyncClient(base_url=crash.gateway_url, timeout=30) as http:
        applied, refused, lost = [await new_payer(http, crash, 50_000, amount) for amount in (10_000, 20_000, 30_000)]
        await crash.mode("hang")
        for payer in (applied, refused, lost):
            await start_payment_held_by_billing(http, crash, payer)
        await kill_while_billing_holds(http, crash, [applied, refused, lost])

        await crash.billing("/control/release", outcome="apply", topup_ids=[applied.payment_id])
        await crash.billing("/control/release", outcome="refuse", topup_ids=[refused.payment_id])
        await crash.billing("/control/release", outcome="drop", topup_ids=[lost.payment_id])
        await eventually(lambda: _empty(crash))
        assert await crash.credited(applied.phone) == 10_000 and await crash.credited(lost.phone) == 0
        await crash.mode("ok")
        await crash.restart_redemption()

        done = {p.payment_id: await settled(http, p) for p in (applied, refused, lost)}
        assert done[applied.payment_id]["status"] == "COMPLETED"
        assert done[refused.payment_id]["status"] == "FAILED" and done[refused.payment_id]["failure_reason"]
        assert done[lost.payment_id]["status"] == "COMPLETED"
        for payer, posted in ((applied, True), (refused, False), (lost, True)):
            assert await crash.credited(payer.phone) == (payer.amount if posted else 0)
            assert await crash.hold_state(payer.payment_id) == ("POSTED" if posted else "VOIDED")
            assert await balance(http, payer) == {
                "balance_kopecks": 50_000 - (payer.amount if posted else 0),
                "available_kopecks": 50_000 - (payer.amount if posted else 0), "pending_cashback_kopecks": 0,
                "debt_kopecks": 0}
            # The client retries with its key after the outage: the same payment, not a second one.
            retry = await http.post("/v1/me/mobile-payments", json={"amount_kopecks": payer.amount},
                                    headers={**payer.auth, "Idempotency-Key": payer.key})
            assert retry.status_code == 200, retry.text
            assert retry.json()["payment_id"] == payer.payment_id
            assert retry.json()["status"] == done[payer.payment_id]["status"]
        assert await crash.credited(applied.phone) == 10_000 and await crash.credited(lost.phone) == 30_000
    await crash.assert_audit_ok()


async def test_kill_between_the_top_up_and_the_post(crash: CrashStack):
    """Billing has applied two top-ups and holds its answers when redemption dies: after the
    restart both holds are posted once, and nothing is topped up again."""
    async with httpx.AsyncClient(base_url=crash.gateway_url, timeout=30) as http:
        payers = [await new_payer(http, crash, 40_000, amount) for amount in (15_000, 40_000)]
        applied_before = (await crash.billing("/control"))["applied_count"]
        await crash.mode("apply_then_hang")
        for payer in payers:
            await start_payment_held_by_billing(http, crash, payer)
            assert await crash.credited(payer.phone) == payer.amount  # applied; the post is yet to come
        await kill_while_billing_holds(http, crash, payers)
        await crash.billing("/control/release", outcome="apply")
        await crash.mode("ok")
        await crash.restart_redemption()

        for payer in payers:
            assert (await settled(http, payer))["status"] == "COMPLETED"
            assert await crash.hold_state(payer.payment_id) == "POSTED"
            assert await crash.credited(payer.phone) == payer.amount
            left = 40_000 - payer.amount
            assert await balance(http, payer) == {"balance_kopecks": left, "available_kopecks": left,
                                                  "pending_cashback_kopecks": 0, "debt_kopecks": 0}
        assert (await crash.billing("/control"))["applied_count"] == applied_before + len(payers)
    await crash.assert_audit_ok()


async def _empty(crash: CrashStack) -> bool:
    return await crash.held() == []
