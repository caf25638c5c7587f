"""The ledger process killed with SIGKILL in the middle of a stream of transfers from concurrent
clients that retry the same ids until they are acknowledged; restarted; then the audit passes,
every acknowledged transfer is there exactly once, and the balances are the sums of them.

A ledger of its own (a process, as `make run` starts it, on a free port and a fresh database):
the shared session stack is never touched."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import grpc
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from scripts.stack import Stack, free_port, processes
from services.common.grpc_client import open_channel

pytestmark = pytest.mark.e2e

CLIENTS = 6
PER_CLIENT = 60
BATCH_CLIENTS = 2
BATCHES_PER_CLIENT = 6
BATCH_SIZE = 25
USERS = [str(uuid.uuid4()) for _ in range(5)]
RETRY_FOR_SECONDS = 120  # a generous bound: the machine is shared


def accrual(tid: str, uid: str, amount: int) -> ledger_pb2.Transfer:
    return ledger_pb2.Transfer(
        transfer_id=tid, credit_account=ledger_pb2.AccountRef(user_id=uid), amount_kopecks=amount,
        debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
        kind=ledger_pb2.TRANSFER_KIND_CASHBACK, reference=tid)


async def until_acknowledged(send, what: str):  # noqa: ANN001, ANN201
    """Retries one request (the same transfer ids) until the ledger answers it."""
    deadline = time.monotonic() + RETRY_FOR_SECONDS
    while True:
        try:
            return await send()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                  grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
                raise
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not acknowledged after {RETRY_FOR_SECONDS} s") from exc
            await asyncio.sleep(0.05)


async def test_a_killed_ledger_loses_and_duplicates_no_acknowledged_transfer(new_database, tmp_path):
    port = free_port()
    [proc] = [p for p in processes({"ledger": port}, databases={"ledger": await new_database("ledger")})
              if p.name == "ledger"]
    stack = Stack([proc], env={"CASHBACK_ENV": "dev"}, log_dir=str(tmp_path))
    await stack.start_one(proc)
    channel = open_channel(f"127.0.0.1:{port}", default_timeout=5)
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    acknowledged: dict[str, tuple[str, int]] = {}  # transfer id -> (user, amount)
    replies: Counter[str] = Counter()
    total = CLIENTS * PER_CLIENT + BATCH_CLIENTS * BATCHES_PER_CLIENT * BATCH_SIZE
    a_third_done = asyncio.Event()

    def acknowledge(tid: str, uid: str, amount: int) -> None:
        acknowledged[tid] = (uid, amount)
        if len(acknowledged) >= total // 3:
            a_third_done.set()

    async def single_client(c: int) -> None:
        for i in range(PER_CLIENT):
            tid, uid, amount = f"cashback:crash-{c}-{i}", USERS[(c + i) % len(USERS)], 100 + c * 1000 + i
            reply = await until_acknowledged(
                lambda t=accrual(tid, uid, amount): stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=t)),
                tid)
            assert reply.transfer.transfer_id == tid
            replies["already existed" if reply.already_existed else "created"] += 1
            acknowledge(tid, uid, amount)

    async def batch_client(c: int) -> None:
        for b in range(BATCHES_PER_CLIENT):
            batch = [accrual(f"cashback:crash-batch-{c}-{b}-{i}", USERS[i % len(USERS)], 7 + i)
                     for i in range(BATCH_SIZE)]
            reply = await until_acknowledged(
                lambda batch=batch: stub.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=batch)),
                f"batch {c}-{b}")
            assert reply.applied
            statuses = {r.status for r in reply.results}
            # A batch retried after the crash is either wholly new or wholly there: all or nothing.
            assert len(statuses) == 1, statuses
            for t in batch:
                acknowledge(t.transfer_id, t.credit_account.user_id, t.amount_kopecks)

    async def killer() -> None:
        await asyncio.wait_for(a_third_done.wait(), RETRY_FOR_SECONDS)
        child = stack.running[proc.name]
        child.kill()  # SIGKILL: no graceful shutdown, transactions in flight are cut
        assert await child.wait() == -9
        await stack.start_one(proc, timeout=90)

    try:
        await asyncio.gather(killer(), *(single_client(c) for c in range(CLIENTS)),
                             *(batch_client(c) for c in range(BATCH_CLIENTS)))
        audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())
        assert audit.ok, list(audit.violations)
        # Exactly once: as many transfers as acknowledged ids, each one with its own amount...
        assert audit.transfers_checked == len(acknowledged) == total
        for tid, (uid, amount) in acknowledged.items():
            got = (await stub.GetTransfer(ledger_pb2.GetTransferRequest(transfer_id=tid))).transfer
            assert (got.credit_account.user_id, got.amount_kopecks) == (uid, amount)
        # ...and each user's balance the sum of the acknowledged transfers to them.
        expected = Counter()
        for uid, amount in acknowledged.values():
            expected[uid] += amount
        for uid in USERS:
            b = (await stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=uid))).balance
            assert b.posted_kopecks == expected[uid], uid
        print(f"ledger crash: {dict(replies)} single replies, {len(acknowledged)} transfers acknowledged")
    finally:
        await channel.close()
        await stack.stop()
