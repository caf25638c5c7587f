"""Postbacks at volume through the gateway, against a PRIVATE stack of processes (free ports, fresh
databases, its own redis-server) so that Redis and tracking can be stopped without disturbing other
tests: 1,000 orders of 50 shops that share 100 order ids, each reported pending then approved, 10
copies in all, shuffled (approvals often before the pending they replace), 200 in flight → exactly
1,000 purchases, each its shop's order at the approved amount, and 1,000 ledger credits with the
right total, with Redis up and with Redis stopped halfway. (Crashes of tracking: test_tracking_crash.py.)

PostgreSQL only: 10,000 requests through the whole stack take too long on SQLite on 2 cores, and
the embedded backend runs without Redis, which is what these tests are about."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from scripts.stack import Process, Stack, free_port, processes
from services.common.grpc_client import open_channel
from tests.conftest import BACKEND
from tests.e2e.conftest import SERVICES, _dump_logs, direct_postback, sign_direct, sign_up
from tests.polling import eventually

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL+Redis only (see the docstring)")]

PARTNERS = 50  # shops that share ORDER_IDS order ids: shops number their orders independently
ORDER_IDS = 100
ORDERS = 1_000
COPIES = 10
IN_FLIGHT = 200
AMOUNTS = [150_000 + 7_919 * i for i in range(10)]  # kopecks; cashback differs per amount


class PrivateRedis:
    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        # AOF (fsync every second, and on shutdown): spooled audit records survive a Redis restart.
        self.process = await asyncio.create_subprocess_exec(
            shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--dir", self.directory,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self.process = None


@dataclass
class Private:
    stack: Stack
    redis: PrivateRedis
    gateway_url: str
    ledger_address: str
    tracking_db: str

    def proc(self, name: str) -> Process:
        return next(p for p in self.stack.procs if p.name == name)

    async def audit_count(self) -> int:
        conn = await asyncpg.connect(self.tracking_db.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM postbacks"))
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def private(new_database, tmp_path_factory) -> AsyncIterator[Private]:
    redis = PrivateRedis(str(tmp_path_factory.mktemp("redis")))
    await redis.start()
    ports = {name: free_port() for name in (*SERVICES, "gateway", "billing")}
    databases = {service: await new_database(service) for service in SERVICES}
    procs = processes(ports, databases=databases, redis_url=redis.url, accrual_delay_seconds=0)
    extra = {"tracking": {"TRACKING_OUTBOX_LEASE_SECONDS": "2"},
             "gateway": {"GATEWAY_RPC_DEADLINE_SECONDS": "30"}}  # a shared 2-core machine is slow under load
    procs = [dataclasses.replace(p, env={**p.env, **extra.get(p.name, {})}) for p in procs]
    log_dir = str(tmp_path_factory.mktemp("private-stack-logs"))
    stack = Stack(procs, env={"CASHBACK_ENV": "dev", "LOG_LEVEL": "WARNING"}, log_dir=log_dir)
    try:
        await stack.start()
    except Exception:
        await stack.stop()
        await redis.stop()
        _dump_logs(log_dir)
        raise
    yield Private(stack, redis, f"http://127.0.0.1:{ports['gateway']}", f"127.0.0.1:{ports['ledger']}",
                  databases["tracking"])
    await stack.stop()
    await redis.stop()


def beeline_number() -> str:
    return f"+7903{random.randint(0, 9_999_999):07d}"  # not the operator's: no automatic sweep


async def statement(ledger_address: str, user_id: str) -> list[ledger_pb2.StatementEntry]:
    async with open_channel(ledger_address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        entries, token = [], ""
        while True:
            page = await stub.ListStatement(ledger_pb2.ListStatementRequest(
                user_id=user_id, page_size=100, page_token=token), timeout=30)
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries



@dataclass
class Shopper:
    user_id: str
    auth: dict[str, str]
    clicks: dict[str, str]  # partner -> click id


async def customer(http: httpx.AsyncClient, partners: list[str] | None = None) -> Shopper:
    signed = await sign_up(http, beeline_number())
    auth = {"Authorization": f"Bearer {signed['access_token']}"}
    clicks = {}
    for partner in partners or ["aliexpress"]:
        click = await http.post(f"/v1/partners/{partner}/clicks", headers=auth)
        assert click.status_code == 201, click.text
        clicks[partner] = click.json()["click_id"]
    return Shopper(signed["user"]["user_id"], auth, clicks)


async def shops(http: httpx.AsyncClient) -> list[str]:
    """PARTNERS shops of the catalogue that pay a percentage (not the operator's own services)."""
    found, token = [], ""
    while len(found) < PARTNERS:
        page = (await http.get("/v1/partners", params={"page_size": 100, **({"page_token": token} if token else {})}
                               )).json()
        found += [p["partner_id"] for p in page["partners"]
                  if all(t["rate_type"] == "PERCENT" for t in p["rules"]["tiers"])]
        token = page["next_page_token"]
        assert token or len(found) >= PARTNERS, "not enough shops in the catalogue"
    return found[:PARTNERS]


async def quote(http: httpx.AsyncClient, partner: str, amount: int) -> int:
    reply = await http.get(f"/v1/partners/{partner}/quote", params={"amount_kopecks": amount, "channel": "WEB"})
    assert reply.status_code == 200, reply.text
    return reply.json()["decision"]["cashback_kopecks"]


@dataclass(frozen=True)
class Order:
    partner: str
    order_id: str
    amount: int  # what the shop finally approves; its earlier pending report says less


async def storm_orders(http: httpx.AsyncClient, shopper_partners: list[str]) -> tuple[list[Order], int]:
    """ORDERS (shop, order) pairs over the shops, which share ORDER_IDS order ids: the same id at
    many shops is a purchase at each. Answers the orders and the cashback they must credit."""
    run = uuid.uuid4().hex[:6]
    pairs = random.sample([(p, f"{run}-{o}") for p in shopper_partners for o in range(ORDER_IDS)], ORDERS)
    orders = [Order(p, o, AMOUNTS[i % len(AMOUNTS)]) for i, (p, o) in enumerate(pairs)]
    quotes = {(p, a): await quote(http, p, a) for p in shopper_partners for a in AMOUNTS}
    return orders, sum(quotes[(o.partner, o.amount)] for o in orders)


async def flood(private: Private, shopper: Shopper, orders: list[Order], halfway=None) -> tuple[Counter, int]:
    """Per order, its shop's pending report (a lower amount) and later approval (event times a
    minute apart), COPIES copies in all, every request in random order (so approvals often arrive
    before the pending they replace), IN_FLIGHT at once; `halfway` runs once half the answers are
    in, while requests are still in flight. Answers the outcomes and the number of requests sent
    (retries after a gateway timeout included: the first try may have landed)."""
    start = int(time.time()) - 3600
    requests = []
    for order in orders:
        for status, amount, at, copies in (("pending", order.amount - 10_000, start, COPIES // 2),
                                            ("approved", order.amount, start + 60, COPIES - COPIES // 2)):
            body, _ = direct_postback(order_id=order.order_id, click_id=shopper.clicks[order.partner],
                                      partner_id=order.partner, status=status, amount_kopecks=amount,
                                      currency="RUB", event_time=at)
            requests.extend([body] * copies)
    random.shuffle(requests)
    outcomes: Counter = Counter()
    semaphore = asyncio.Semaphore(IN_FLIGHT)
    halfway_task: list[asyncio.Task] = []
    attempts = [0]  # requests that reached the gateway or may have: every one is stored
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=private.gateway_url, timeout=60, limits=limits) as client:
        async def send(body: bytes) -> None:
            async with semaphore:
                # Signed when sent (a signature is valid 300 s); copies stay exact duplicates.
                headers = {"Content-Type": "application/json", "X-Cashback-Signature": sign_direct(body)}
                # As networks do, a delivery that did not get a 2xx/4xx answer is sent again: under
                # load a timeout, and on this shared machine PostgreSQL's "too many clients" (500).
                for attempt in range(5):
                    attempts[0] += 1
                    try:
                        reply = await client.post("/v1/postbacks/direct", content=body, headers=headers)
                    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
                        if attempt == 4:
                            raise
                        continue
                    if reply.status_code < 500 or attempt == 4:
                        break
            assert reply.status_code == 200, reply.text
            outcomes[reply.json()["outcome"]] += 1
            if halfway is not None and sum(outcomes.values()) == len(requests) // 2:
                halfway_task.append(asyncio.create_task(halfway()))

        await asyncio.gather(*(send(body) for body in requests))
    for task in halfway_task:
        await task
    return outcomes, attempts[0]


async def check_credited(private: Private, http: httpx.AsyncClient, shopper: Shopper, orders: list[Order],
                         total: int) -> None:
    async def all_credited():
        entries = [e for e in await statement(private.ledger_address, shopper.user_id)
                   if e.kind == ledger_pb2.TRANSFER_KIND_CASHBACK]
        return entries if len(entries) >= len(orders) else None

    entries = await eventually(all_credited, seconds=120)
    assert len(entries) == len(orders)
    assert len({e.transfer_id for e in entries}) == len(orders)
    assert sum(e.amount_kopecks for e in entries) == total
    balance = (await http.get("/v1/me/balance", headers=shopper.auth)).json()
    assert balance["balance_kopecks"] == total
    purchases, token = [], ""
    while True:
        page = (await http.get("/v1/me/purchases", headers=shopper.auth,
                               params={"page_size": 100, **({"page_token": token} if token else {})})).json()
        purchases.extend(page["purchases"])
        token = page.get("next_page_token") or ""
        if not token:
            break
    assert len(purchases) == len(orders)
    assert {p["status"] for p in purchases} == {"ACCRUED"}
    # Each purchase is its shop's order, at the approved amount: the same id at two shops is two purchases.
    assert sorted((p["partner_id"], p["order_id"], p["amount_kopecks"]) for p in purchases) == \
        sorted((o.partner, o.order_id, o.amount) for o in orders)


async def run_load(private: Private, halfway=None, before_audit_check=None) -> None:
    async with httpx.AsyncClient(base_url=private.gateway_url, timeout=30) as http:
        partners = await shops(http)
        shopper = await customer(http, partners)
        orders, total = await storm_orders(http, partners)
        audit_before = await private.audit_count()
        started = time.monotonic()
        outcomes, sent = await flood(private, shopper, orders, halfway)
        print(f"flood {time.monotonic() - started:.1f}s, {sent} requests, {dict(outcomes)}")
        # A report older than one applied before it is SUPERSEDED; a retry after a gateway timeout
        # may find its report already applied (DUPLICATE).
        assert set(outcomes) <= {"ACCEPTED", "DUPLICATE", "SUPERSEDED"}
        assert sum(outcomes.values()) == ORDERS * COPIES and outcomes["ACCEPTED"] <= 2 * ORDERS
        await check_credited(private, http, shopper, orders, total)
        print(f"credited {time.monotonic() - started:.1f}s")

        if before_audit_check is not None:
            await before_audit_check()

        async def all_stored():  # every postback, fast-path duplicates included (spooled, then flushed)
            stored = await private.audit_count() - audit_before
            # Every answered request is stored; a request the gateway gave up on may or may not
            # have reached tracking.
            return ORDERS * COPIES <= stored <= sent

        await eventually(all_stored, seconds=60)


async def test_ten_thousand_postbacks_make_one_thousand_purchases_and_credits(private):
    await run_load(private)


async def test_the_same_with_redis_stopped_halfway(private):
    async def redis_back() -> None:
        # Duplicates answered just before the stop were spooled in Redis: they reach the audit
        # table once Redis is back (same port, same append-only file), not before.
        if private.redis.process is None:
            await private.redis.start()

    try:
        await run_load(private, halfway=private.redis.stop, before_audit_check=redis_back)
    finally:
        if private.redis.process is None:
            await private.redis.start()  # same port, same AOF: spooled records come back and are flushed
