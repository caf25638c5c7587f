"""Crash safety of postback ingestion: tracking killed with SIGKILL while partners resend every
non-200 answer until they get a 200 — between the Redis claim and the commit (held there by a lock
on its database), and at random moments under a steady load (claims, commits, answers and the
outbox relay all in flight) — and yet every report is applied and credited exactly once, every
credit's SMS is sent once, and the ledger's audit is clean. On PostgreSQL + Redis and on the
embedded default. A private stack of processes (free ports, fresh databases)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from scripts.stack import Process, Stack
from services.common.grpc_client import open_channel
from tests.conftest import BACKEND
from tests.e2e.conftest import GENEROUS_LIMITS, _dump_logs, sign_direct, sign_up, start_private_stack
from tests.polling import eventually

pytestmark = pytest.mark.e2e

RETRY_FOR_SECONDS = 180  # a generous bound: the machine is shared
ORDERS = 80 if BACKEND == "postgres" else 40
CLIENTS = 8
KILLS = 3


@dataclass
class Crashable:
    stack: Stack
    procs: dict[str, Process]
    gateway_url: str
    ledger_address: str
    tracking_db: str

    async def kill_tracking(self) -> None:
        child = self.stack.running["tracking"]
        child.kill()  # SIGKILL: no graceful shutdown, whatever is in flight is cut
        assert await child.wait() == -9
        self.stack.running.pop("tracking", None)

    async def restart_tracking(self) -> None:
        await self.stack.start_one(self.procs["tracking"], timeout=90)


@pytest.fixture
async def crashable(new_database, redis_url, tmp_path) -> AsyncIterator[Crashable]:
    overrides = {"tracking": {"TRACKING_OUTBOX_LEASE_SECONDS": "2"},
                 "gateway": {"GATEWAY_RPC_DEADLINE_SECONDS": "10"}}
    stack, ports, procs = await start_private_stack(new_database, redis_url, str(tmp_path), overrides=overrides,
                                                    env=GENEROUS_LIMITS)
    tracking_db = procs["tracking"].env["TRACKING_DATABASE_URL"]
    try:
        yield Crashable(stack, procs, f"http://127.0.0.1:{ports['gateway']}", f"127.0.0.1:{ports['ledger']}",
                        tracking_db)
    except Exception:
        _dump_logs(str(tmp_path))
        raise
    finally:
        await stack.stop()


async def deliver(client: httpx.AsyncClient, body: bytes, answers: Counter) -> dict:
    """A partner's delivery: resent on every non-200 answer (and on no answer) until a 200."""
    deadline = time.monotonic() + RETRY_FOR_SECONDS
    while True:
        try:
            reply = await client.post("/v1/postbacks/direct", content=body, headers={
                "Content-Type": "application/json", "X-Cashback-Signature": sign_direct(body)})
            answers[reply.status_code] += 1
            if reply.status_code == 200:
                return reply.json()
            assert reply.status_code in (503, 504), reply.text  # never a 4xx for a good report
        except httpx.TransportError:
            answers["no answer"] += 1
        assert time.monotonic() < deadline, f"not applied after {RETRY_FOR_SECONDS} s"
        await asyncio.sleep(0.1)


async def shopper(http: httpx.AsyncClient) -> tuple[dict, dict[str, str], str]:
    signed = await sign_up(http, f"+7903{random.randint(0, 9_999_999):07d}")  # not the operator's: no sweep
    auth = {"Authorization": f"Bearer {signed['access_token']}"}
    click = await http.post("/v1/partners/aliexpress/clicks", headers=auth)
    assert click.status_code == 201, click.text
    return signed["user"], auth, click.json()["click_id"]


def report(click_id: str, amount: int) -> bytes:
    return json.dumps({"order_id": f"CRASH-{uuid.uuid4().hex[:10]}", "click_id": click_id, "status": "approved",
                       "amount_kopecks": amount, "currency": "RUB"}, separators=(",", ":")).encode()


async def ledger_check(address: str, user_id: str) -> list[ledger_pb2.StatementEntry]:
    async with open_channel(address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest(), timeout=60)
        assert audit.ok and audit.posted_sum_kopecks == 0, list(audit.violations)
        entries, token = [], ""
        while True:
            page = await stub.ListStatement(ledger_pb2.ListStatementRequest(
                user_id=user_id, page_size=100, page_token=token), timeout=30)
            entries += page.entries
            token = page.next_page_token
            if not token:
                return entries



async def credit_messages(http: httpx.AsyncClient, phone: str) -> list[str]:
    reply = await http.get("/dev/outbox", params={"to": phone})
    reply.raise_for_status()
    return [m["text"] for m in reply.json()["messages"] if "начислен" in m["text"]]


class DatabaseHold:
    """Holds tracking's database so that writes wait: an exclusive table lock on PostgreSQL, an
    exclusive transaction on the SQLite file. Tracking then claims a report in Redis and blocks
    before its commit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def __aenter__(self) -> DatabaseHold:
        if self.url.startswith("postgresql"):
            self._pg = await asyncpg.connect(self.url.replace("postgresql+asyncpg://", "postgresql://"))
            await self._pg.execute("BEGIN; LOCK TABLE purchases IN EXCLUSIVE MODE")
        else:
            path = self.url.split("///", 1)[1]

            def hold() -> sqlite3.Connection:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
                conn.execute("BEGIN EXCLUSIVE")
                return conn

            self._sqlite = await asyncio.to_thread(hold)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pg is not None:
            await self._pg.execute("ROLLBACK")
            await self._pg.close()
        if self._sqlite is not None:
            await asyncio.to_thread(self._sqlite.execute, "ROLLBACK")
            self._sqlite.close()


async def test_a_report_claimed_but_not_committed_when_tracking_dies_is_applied_on_the_retry(crashable):
    answers: Counter = Counter()
    async with httpx.AsyncClient(base_url=crashable.gateway_url, timeout=30) as http:
        user, auth, click_id = await shopper(http)
        body = report(click_id, 150_000)
        async with DatabaseHold(crashable.tracking_db):
            # The delivery reaches tracking, which claims it and then waits for the database...
            first = asyncio.create_task(http.post("/v1/postbacks/direct", content=body, headers={
                "Content-Type": "application/json", "X-Cashback-Signature": sign_direct(body)}))
            await asyncio.sleep(2)
            assert not first.done()
            await crashable.kill_tracking()  # ...and dies there.
        cut = await first
        assert cut.status_code in (503, 504), cut.text  # the partner is told to retry
        await crashable.restart_tracking()
        applied = await deliver(http, body, answers)
        assert applied["outcome"] == "ACCEPTED", applied  # not a DUPLICATE of a report never applied
        again = await deliver(http, body, answers)
        assert again["outcome"] == "DUPLICATE"
        purchase = await eventually(lambda: _accrued(http, auth, applied["purchase_id"]), seconds=RETRY_FOR_SECONDS)

        async def credited():  # the relay credits the ledger after the accrual job marked it ACCRUED
            return await ledger_check(crashable.ledger_address, user["user_id"]) or None

        entries = await eventually(credited, seconds=RETRY_FOR_SECONDS)
        await asyncio.sleep(1)  # and nothing more comes
        entries = await ledger_check(crashable.ledger_address, user["user_id"])
        assert [(e.kind, e.amount_kopecks) for e in entries] == [
            (ledger_pb2.TRANSFER_KIND_CASHBACK, purchase["cashback_kopecks"])]


async def _accrued(http: httpx.AsyncClient, auth: dict[str, str], purchase_id: str) -> dict | None:
    reply = await http.get("/v1/me/purchases", headers=auth, params={"page_size": 100})
    reply.raise_for_status()
    found = [p for p in reply.json()["purchases"] if p["purchase_id"] == purchase_id]
    return found[0] if found and found[0]["status"] == "ACCRUED" else None


async def test_tracking_killed_at_random_under_load_loses_and_doubles_nothing(crashable):
    answers: Counter = Counter()
    outcomes: Counter = Counter()
    async with httpx.AsyncClient(base_url=crashable.gateway_url, timeout=30) as http:
        user, auth, click_id = await shopper(http)
        amounts = [100_000 + 1_000 * i for i in range(ORDERS)]
        quotes = {a: (await http.get("/v1/partners/aliexpress/quote", params={"amount_kopecks": a})).json()[
            "decision"]["cashback_kopecks"] for a in set(amounts)}
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for amount in amounts:
            body = report(click_id, amount)
            for _ in range(2):  # each report delivered twice, as networks do
                queue.put_nowait(body)
        # Kill points at random moments of the run, by progress (so however fast the machine is).
        total_deliveries = queue.qsize()
        kill_at = sorted(random.sample(range(total_deliveries // 10, total_deliveries * 9 // 10), KILLS))
        progress = asyncio.Condition()

        async def partner() -> None:
            while not queue.empty():
                answer = await deliver(http, queue.get_nowait(), answers)
                async with progress:
                    outcomes[answer["outcome"]] += 1
                    progress.notify_all()

        async def killer() -> None:
            for point in kill_at:
                async with progress:
                    await progress.wait_for(lambda p=point: sum(outcomes.values()) >= p)
                await asyncio.sleep(random.uniform(0, 0.2))  # somewhere in the next deliveries' path
                await crashable.kill_tracking()
                await asyncio.sleep(random.uniform(0, 1))  # the gateway answers 503 meanwhile
                await crashable.restart_tracking()

        await asyncio.gather(killer(), *(partner() for _ in range(CLIENTS)))
        print(f"tracking crash: answers {dict(answers)}, outcomes {dict(outcomes)}")
        # A delivery cut between commit and answer was applied: its retry is then the DUPLICATE.
        assert set(outcomes) <= {"ACCEPTED", "DUPLICATE"} and sum(outcomes.values()) == 2 * ORDERS
        assert outcomes["ACCEPTED"] <= ORDERS
        total = sum(quotes[a] for a in amounts)

        async def all_credited():
            entries = [e for e in await ledger_check(crashable.ledger_address, user["user_id"])
                       if e.kind == ledger_pb2.TRANSFER_KIND_CASHBACK]
            return entries if len(entries) >= ORDERS else None

        entries = await eventually(all_credited, seconds=300)
        assert len(entries) == len({e.transfer_id for e in entries}) == ORDERS
        assert sum(e.amount_kopecks for e in entries) == total
        assert (await http.get("/v1/me/balance", headers=auth)).json()["balance_kopecks"] == total
        messages = await eventually(lambda: _at_least(credit_messages(http, user["phone"]), ORDERS),
                                    seconds=RETRY_FOR_SECONDS)
        assert len(messages) == ORDERS  # an SMS for each credit, once


async def _at_least(found, count: int) -> list | None:  # noqa: ANN001
    items = await found
    return items if len(items) >= count else None


async def test_tracking_killed_while_its_relay_waits_on_the_ledger_credits_once(crashable):
    """The relay's credit call is in flight (the ledger is stopped with SIGSTOP, so the call can
    neither finish nor fail) when tracking dies; the ledger then resumes and may or may not apply
    that call. After tracking's restart the lease runs out and the relay calls again: one credit,
    one SMS, whichever way the first call went."""
    answers: Counter = Counter()
    async with httpx.AsyncClient(base_url=crashable.gateway_url, timeout=30) as http:
        user, auth, click_id = await shopper(http)
        ledger = crashable.stack.running["ledger"]
        ledger.send_signal(signal.SIGSTOP)
        try:
            applied = await deliver(http, report(click_id, 150_000), answers)
            assert applied["outcome"] == "ACCEPTED"
            await asyncio.sleep(2)  # accrual delay 0: the relay is now waiting on the ledger
            await crashable.kill_tracking()
        finally:
            ledger.send_signal(signal.SIGCONT)
        await crashable.restart_tracking()
        purchase = await eventually(lambda: _accrued(http, auth, applied["purchase_id"]), seconds=RETRY_FOR_SECONDS)

        async def credited():
            entries = await ledger_check(crashable.ledger_address, user["user_id"])
            return entries if entries else None

        entries = await eventually(credited, seconds=RETRY_FOR_SECONDS)
        messages = await eventually(lambda: _at_least(credit_messages(http, user["phone"]), 1),
                                    seconds=RETRY_FOR_SECONDS)
        await asyncio.sleep(3)  # a lease and more: a second delivery would have happened by now
        entries = await ledger_check(crashable.ledger_address, user["user_id"])
        assert [(e.kind, e.amount_kopecks) for e in entries] == [
            (ledger_pb2.TRANSFER_KIND_CASHBACK, purchase["cashback_kopecks"])]
        assert len(await credit_messages(http, user["phone"])) == len(messages) == 1
