"""Ledger benchmark (part of `make bench`).

The ledger runs as its own process (`python -m services.ledger`, as `make run` starts it) on a
fresh database; this process is the client. On PostgreSQL (BENCH_POSTGRES_URL, default the local
server) it measures:
  - single transfers per second: one CreateTransfer per accrual, BENCH_CONCURRENCY (16) callers at
    once (the ledger group-commits them); target >= 0.5x pgbench's TPC-B TPS;
  - batched transfers per second: CreateTransfers with BENCH_BATCH (1,000) accruals per call, one
    call at a time (the primary figure); then, as a secondary figure, BENCH_BATCHES_IN_FLIGHT (2)
    callers at once;
  - balance reads (GetBalance) p50/p99 while BENCH_CONCURRENCY / 2 writers (a client process of
    their own) keep creating single transfers; target p99 <= 10 ms on PostgreSQL, <= 25 ms on
    SQLite (WAL: readers never wait for writers);
and beside them, in the same run against the same server, pgbench's built-in TPC-B-like
workload (`pgbench -b tpcb-like`, the classic account-transfer transaction) on a scratch
database, printed as ratios. Target: batched transfers/s >= 10x pgbench's TPC-B TPS.
The same ledger figures on SQLite follow (no pgbench beside them). Figures are printed beside their
targets, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid

import asyncpg
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from scripts.stack import Stack, free_port, processes
from services.common.config import ROOT
from services.common.credentials import hash_key
from services.common.grpc_client import open_channel

SINGLE = int(os.environ.get("BENCH_TRANSFERS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
BATCH = int(os.environ.get("BENCH_BATCH", "1000"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "20"))
IN_FLIGHT = int(os.environ.get("BENCH_BATCHES_IN_FLIGHT", "2"))  # secondary figure; 0 or 1: not measured
READ_SECONDS = float(os.environ.get("BENCH_READ_SECONDS", "8"))
PGBENCH_SECONDS = int(os.environ.get("BENCH_PGBENCH_SECONDS", "10"))
USERS = 1000
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SINGLE_TARGET = 0.5  # x pgbench TPC-B TPS (issue 14)
READ_P99_TARGET_MS = {"postgres": 10.0, "sqlite": 25.0}


def accrual(run: str, i: int) -> ledger_pb2.Transfer:
    return ledger_pb2.Transfer(
        transfer_id=f"bench:{run}:{i}", amount_kopecks=100 + i % 1000, kind=ledger_pb2.TRANSFER_KIND_CASHBACK,
        debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
        credit_account=ledger_pb2.AccountRef(user_id=f"bench-user-{i % USERS}"),
    )


async def single_transfers(stub: ledger_pb2_grpc.LedgerServiceStub, n: int, concurrency: int) -> float:
    run = uuid.uuid4().hex[:8]
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(run, i)))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def batched_transfers(stub: ledger_pb2_grpc.LedgerServiceStub, batches: int, size: int) -> float:
    run = uuid.uuid4().hex[:8]
    requests = [ledger_pb2.CreateTransfersRequest(transfers=[accrual(run, b * size + i) for i in range(size)])
                for b in range(batches)]
    started = time.perf_counter()
    for request in requests:
        reply = await stub.CreateTransfers(request)
        assert reply.applied, [r.reason for r in reply.results if r.reason][:3]
    return batches * size / (time.perf_counter() - started)


async def batched_in_flight(stub: ledger_pb2_grpc.LedgerServiceStub, batches: int, size: int, in_flight: int) -> float:
    """As batched_transfers, but `in_flight` callers each sending their batches one after another (the
    same accruals to the same users: the batches serialise on the users' account locks, and only the
    work outside the transaction overlaps). A secondary figure: the primary one is sequential."""
    run = uuid.uuid4().hex[:8]
    requests = iter([ledger_pb2.CreateTransfersRequest(transfers=[accrual(run, b * size + i) for i in range(size)])
                     for b in range(batches)])

    async def caller() -> None:
        for request in requests:
            reply = await stub.CreateTransfers(request)
            assert reply.applied, [r.reason for r in reply.results if r.reason][:3]

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return batches * size / (time.perf_counter() - started)


async def write_for(address: str, token: str, seconds: float, writers: int) -> int:
    """`writers` callers creating single transfers for `seconds`; how many they created."""
    channel = open_channel(address, default_timeout=120, token=token)
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds
    written = 0

    async def writer() -> None:
        nonlocal written
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(run, i)))
            written += 1

    try:
        await asyncio.gather(*(writer() for _ in range(writers)))
    finally:
        await channel.close()
    return written


async def reads_under_writes(stub: ledger_pb2_grpc.LedgerServiceStub, address: str, token: str,
                             seconds: float) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, writes/s meanwhile): one reader in a loop here, CONCURRENCY // 2 writers in a
    client process of their own (as the gateway and tracking's relay are: the writers' replies are
    not handled by the reader's event loop)."""
    writing = seconds + 1
    writers = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.bench.ledger", "write", address, str(writing), str(max(1, CONCURRENCY // 2)),
        cwd=str(ROOT), env={**os.environ, "BENCH_LEDGER_TOKEN": token}, stdout=asyncio.subprocess.PIPE)
    await asyncio.sleep(0.5)  # the writers are under way
    latencies = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        await stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=f"bench-user-{i % USERS}"))
        latencies.append((time.perf_counter() - t0) * 1000)
        i += 1
    out, _ = await writers.communicate()
    if writers.returncode != 0:
        raise RuntimeError(f"the writers' process failed with code {writers.returncode}")
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98], int(out.split()[-1]) / writing


async def bench_ledger(label: str, database_url: str) -> dict[str, float]:
    port = free_port()
    [proc] = [p for p in processes({"ledger": port}, databases={"ledger": database_url}) if p.name == "ledger"]
    with tempfile.TemporaryDirectory() as logs:
        token = secrets.token_urlsafe(24)  # production mode: the ledger takes only this credential
        stack = Stack([proc], env={"CASHBACK_ENV": "prod", "LOG_LEVEL": "WARNING",
                                   "CASHBACK_SERVICE_CREDENTIALS": f"bench:{hash_key(token)}"}, log_dir=logs)
        await stack.start_one(proc)
        channel = open_channel(f"127.0.0.1:{port}", default_timeout=120, token=token)
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        try:
            await single_transfers(stub, 200, CONCURRENCY)  # warm-up: accounts exist, connections open
            figures = {
                "single": await single_transfers(stub, SINGLE, CONCURRENCY),
                "batched": await batched_transfers(stub, BATCHES, BATCH),
            }
            if IN_FLIGHT > 1:
                figures["in_flight"] = await batched_in_flight(stub, BATCHES, BATCH, IN_FLIGHT)
            figures["read_p50"], figures["read_p99"], figures["writes_during_reads"] = (
                await reads_under_writes(stub, f"127.0.0.1:{port}", token, READ_SECONDS))
            audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())
            figures["audit_ok"] = float(audit.ok)
            figures["transfers"] = float(audit.transfers_checked)
        finally:
            await channel.close()
            await stack.stop()
    return figures


def pgbench_binary() -> str | None:
    for candidate in (shutil.which("pgbench"), "/usr/lib/postgresql/15/bin/pgbench"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


async def pgbench(binary: str, database: str, *args: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].removeprefix("postgresql://")
    user_host, _, port = base.rpartition(":")
    user, _, host = user_host.rpartition("@")
    proc = await asyncio.create_subprocess_exec(
        binary, "-h", host or "127.0.0.1", "-p", port or "5432", "-U", user or "postgres", *args, database,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {text[-500:]}")
    return text


async def pgbench_tpcb(admin: asyncpg.Connection) -> tuple[float, float] | None:
    """(TPS, average latency ms) of `pgbench -b tpcb-like` on a scratch database."""
    binary = pgbench_binary()
    if binary is None:
        print("pgbench not found (apt-get install postgresql-client): no baseline")
        return None
    name = f"cbbench_pgbench_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await pgbench(binary, name, "-i", "-q", "-s", "1")
        text = await pgbench(binary, name, "-b", "tpcb-like", "-T", str(PGBENCH_SECONDS), "-c", "8", "-j", "2")
        tps = float(re.search(r"tps = ([\d.]+)", text).group(1))  # type: ignore[union-attr]
        latency = float(re.search(r"latency average = ([\d.]+) ms", text).group(1))  # type: ignore[union-attr]
        return tps, latency
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def report(label: str, f: dict[str, float], baseline: tuple[float, float] | None) -> None:
    def ratio(value: float) -> str:
        return f"  = {value / baseline[0]:5.1f}x pgbench TPC-B TPS" if baseline else ""

    single_target = f"  (target >= {SINGLE_TARGET}x)" if baseline else ""
    print(f"ledger/{label:<8} single transfers (CreateTransfer, {CONCURRENCY} clients): "
          f"{f['single']:8.0f} transfers/s{ratio(f['single'])}{single_target}")
    print(f"ledger/{label:<8} batched transfers (CreateTransfers x{BATCH}):     "
          f"{f['batched']:8.0f} transfers/s{ratio(f['batched'])}")
    if "in_flight" in f:
        print(f"ledger/{label:<8} {f'batched, {IN_FLIGHT} batches in flight (secondary):':<46}"
              f"{f['in_flight']:8.0f} transfers/s{ratio(f['in_flight'])}")
    read = (f"ledger/{label:<8} GetBalance under write load ({f['writes_during_reads']:.0f} writes/s): "
            f"p50 {f['read_p50']:.2f} ms, p99 {f['read_p99']:.2f} ms (target <= {READ_P99_TARGET_MS[label]:g} ms)")
    if baseline:
        read += f"  (pgbench TPC-B latency average {baseline[1]:.2f} ms: p99 = {f['read_p99'] / baseline[1]:.2f}x)"
    print(read)
    print(f"ledger/{label:<8} audit ok={bool(f['audit_ok'])} over {f['transfers']:.0f} transfers")


async def main() -> None:
    print(f"{SINGLE} single transfers, {BATCHES} batches of {BATCH} (one at a time"
          f"{f', then {IN_FLIGHT} in flight' if IN_FLIGHT > 1 else ''}), reads for {READ_SECONDS:.0f} s")
    name = f"cbbench_ledger_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"ledger/postgres  skipped: no PostgreSQL at {PG_ADMIN} ({exc})")
    else:
        try:
            baseline = await pgbench_tpcb(admin)
            if baseline:
                print(f"pgbench -b tpcb-like -c 8 -j 2 -T {PGBENCH_SECONDS} (scale 1): {baseline[0]:.0f} TPS, "
                      f"latency average {baseline[1]:.2f} ms")
            await admin.execute(f'CREATE DATABASE "{name}"')
            url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
            report("postgres", await bench_ledger("postgres", url), baseline)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    with tempfile.TemporaryDirectory() as tmp:
        report("sqlite", await bench_ledger("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db"), None)


if __name__ == "__main__":  # the writers of reads_under_writes: write ADDRESS SECONDS WRITERS
    _, _, _address, _seconds, _writers = sys.argv
    print(asyncio.run(write_for(_address, os.environ["BENCH_LEDGER_TOKEN"], float(_seconds), int(_writers))))
