"""Ledger benchmark (part of `make bench`).

Ledger: accruals written one RPC per transfer (baseline) against CreateTransfers in batches,
on SQLite and, when it answers, on PostgreSQL (BENCH_POSTGRES_URL, default the local server).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import uuid

import asyncpg
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.grpc_client import open_channel
from services.common.grpc_server import start
from services.ledger.app import build_runtime
from services.ledger.config import Settings

N = int(os.environ.get("BENCH_TRANSFERS", "2000"))
BATCH = int(os.environ.get("BENCH_BATCH", "500"))
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def accrual(i: int, run: str) -> ledger_pb2.Transfer:
    return ledger_pb2.Transfer(
        transfer_id=f"bench:{run}:{i}", amount_kopecks=100 + i % 1000, kind=ledger_pb2.TRANSFER_KIND_CASHBACK,
        debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
        credit_account=ledger_pb2.AccountRef(user_id=f"user-{i % 200}"),
    )


async def bench_ledger(label: str, url: str) -> None:
    running = await start(await build_runtime(Settings(database_url=url)), port=0)
    channel = open_channel(f"127.0.0.1:{running.port}", default_timeout=60)
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    try:
        run = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        for i in range(N):
            await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(i, run)))
        single = N / (time.perf_counter() - started)

        run = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        for offset in range(0, N, BATCH):
            reply = await stub.CreateTransfers(ledger_pb2.CreateTransfersRequest(
                transfers=[accrual(i, run) for i in range(offset, min(N, offset + BATCH))]))
            assert reply.applied
        batched = N / (time.perf_counter() - started)
        audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())
        print(f"ledger/{label:<8} one RPC per transfer (baseline): {single:8.0f} transfers/s")
        print(f"ledger/{label:<8} CreateTransfers x{BATCH:<5}          : {batched:8.0f} transfers/s "
              f"({batched / single:.1f}x baseline); audit ok={audit.ok}")
    finally:
        await channel.close()
        await running.stop(0)


async def main() -> None:
    print(f"{N} transfers per measurement, batch size {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        await bench_ledger("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db")
    name = f"cbbench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"ledger/postgres  skipped: no PostgreSQL at {PG_ADMIN} ({exc})")
    else:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            await bench_ledger("postgres", PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
                               + f"/{name}")
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
    print(f"peak RSS of the benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


