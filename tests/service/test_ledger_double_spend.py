"""Double spend: one account with 100 roubles, 50 concurrent holds of 100 roubles with distinct
ids, again and again: exactly one hold wins each round and the balance is never negative.
One service and one channel for all rounds (200 on PostgreSQL, where row locks decide; 20 on
SQLite, where writers are serialised anyway)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.grpc_client import error_info, open_channel

HUNDRED_ROUBLES = 10_000
CONCURRENT = 50


def hold(uid: str) -> ledger_pb2.CreateTransferRequest:
    return ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
        transfer_id=f"mobile-payment:{uuid.uuid4()}", debit_account=ledger_pb2.AccountRef(user_id=uid),
        credit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_MOBILE_PAYMENTS),
        amount_kopecks=HUNDRED_ROUBLES, kind=ledger_pb2.TRANSFER_KIND_MOBILE_PAYMENT, pending=True,
        timeout_seconds=600))


async def test_fifty_concurrent_holds_of_the_whole_balance_let_exactly_one_through(start_service, backend):
    rounds = 200 if backend == "postgres" else 20
    service = await start_service("ledger")
    channel = open_channel(service.address, default_timeout=60)
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    uid = str(uuid.uuid4())
    try:
        await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
            transfer_id=f"cashback:{uuid.uuid4()}", credit_account=ledger_pb2.AccountRef(user_id=uid),
            debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
            amount_kopecks=HUNDRED_ROUBLES, kind=ledger_pb2.TRANSFER_KIND_CASHBACK)))
        seen_available: list[int] = []

        async def watch(stop: asyncio.Event) -> None:
            while not stop.is_set():
                b = (await stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=uid))).balance
                seen_available.append(b.available_kopecks)
                await asyncio.sleep(0)

        for round_no in range(rounds):
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch(stop))
            outcomes = await asyncio.gather(*(stub.CreateTransfer(hold(uid)) for _ in range(CONCURRENT)),
                                            return_exceptions=True)
            stop.set()
            await watcher
            won = [o for o in outcomes if isinstance(o, ledger_pb2.CreateTransferResponse)]
            lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
            assert len(won) == 1 and len(lost) == CONCURRENT - 1, f"round {round_no}: {len(won)} holds won"
            assert {error_info(o).reason for o in lost} == {"INSUFFICIENT_FUNDS"}
            b = (await stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=uid))).balance
            assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks) == (HUNDRED_ROUBLES,) * 2 + (0,)
            # Release the winner for the next round (a void: the balance is whole again).
            await stub.VoidPendingTransfer(ledger_pb2.VoidPendingTransferRequest(
                transfer_id=won[0].transfer.transfer_id))
        assert seen_available and min(seen_available) >= 0
        audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())
        assert audit.ok, audit.violations
        assert audit.transfers_checked == 1 + rounds
    finally:
        await channel.close()
