"""The ledger over real gRPC with a real database."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.grpc_client import error_info, open_channel

FUNDING = ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING)
PAYMENTS = ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_MOBILE_PAYMENTS)


def user(uid: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(user_id=uid)


def accrual(uid: str, amount: int, tid: str | None = None) -> ledger_pb2.Transfer:
    return ledger_pb2.Transfer(transfer_id=tid or f"cashback:{uuid.uuid4()}", debit_account=FUNDING,
                               credit_account=user(uid), amount_kopecks=amount, kind=ledger_pb2.TRANSFER_KIND_CASHBACK)


def payment(uid: str, amount: int, *, pending: bool = False, tid: str | None = None) -> ledger_pb2.Transfer:
    return ledger_pb2.Transfer(transfer_id=tid or f"mobile-payment:{uuid.uuid4()}", debit_account=user(uid),
                               credit_account=PAYMENTS, amount_kopecks=amount,
                               kind=ledger_pb2.TRANSFER_KIND_MOBILE_PAYMENT, pending=pending, timeout_seconds=60)


@pytest.fixture
async def ledger(start_service):
    service = await start_service("ledger")
    channel = open_channel(service.address)
    yield ledger_pb2_grpc.LedgerServiceStub(channel)
    await channel.close()


async def balance(stub, uid: str) -> ledger_pb2.Balance:
    return (await stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=uid))).balance


async def test_accrual_credits_the_user_and_replay_changes_nothing(ledger):
    uid = str(uuid.uuid4())
    first = await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 15000, "cashback:p1")))
    again = await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 15000, "cashback:p1")))
    assert not first.already_existed and again.already_existed
    assert (await balance(ledger, uid)).posted_kopecks == 15000


async def test_same_id_with_another_amount_is_refused_naming_the_field(ledger):
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 100, "cashback:p2")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 101, "cashback:p2")))
    info = error_info(caught.value)
    assert info.code == grpc.StatusCode.ALREADY_EXISTS
    assert info.reason == "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS" and info.metadata["field"] == "amount_kopecks"
    assert (await balance(ledger, uid)).posted_kopecks == 100


async def test_user_account_cannot_go_below_zero(ledger):
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 500)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 501)))
    assert error_info(caught.value).reason == "INSUFFICIENT_FUNDS"
    assert (await balance(ledger, uid)).posted_kopecks == 500


async def test_points_cannot_leave_to_a_funding_account(ledger):
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 500)))
    cash_out = ledger_pb2.Transfer(transfer_id="x", debit_account=user(uid), credit_account=FUNDING,
                                   amount_kopecks=100, kind=ledger_pb2.TRANSFER_KIND_CASHBACK)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=cash_out))
    assert error_info(caught.value).reason == "KIND_NOT_ALLOWED_FOR_ACCOUNTS"


async def test_hold_reserves_then_post_or_void(ledger):
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 1000)))
    hold = payment(uid, 600, pending=True, tid="mobile-payment:h1")
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=hold))
    b = await balance(ledger, uid)
    assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks) == (1000, 600, 400)
    with pytest.raises(grpc.aio.AioRpcError):
        await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 401)))
    await ledger.PostPendingTransfer(ledger_pb2.PostPendingTransferRequest(transfer_id="mobile-payment:h1"))
    await ledger.PostPendingTransfer(ledger_pb2.PostPendingTransferRequest(transfer_id="mobile-payment:h1"))
    b = await balance(ledger, uid)
    assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks) == (400, 0, 400)
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(
        transfer=payment(uid, 300, pending=True, tid="mobile-payment:h2")))
    await ledger.VoidPendingTransfer(ledger_pb2.VoidPendingTransferRequest(transfer_id="mobile-payment:h2"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.PostPendingTransfer(ledger_pb2.PostPendingTransferRequest(transfer_id="mobile-payment:h2"))
    assert error_info(caught.value).reason == "TRANSFER_ALREADY_VOIDED"
    assert (await balance(ledger, uid)).available_kopecks == 400
    audit = await ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())
    assert audit.ok, audit.violations


async def test_concurrent_holds_on_one_balance_let_exactly_one_through(ledger):
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 10000)))
    calls = [ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 10000, pending=True)))
             for _ in range(20)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert sum(1 for o in outcomes if not isinstance(o, Exception)) == 1
    assert all(error_info(o).reason == "INSUFFICIENT_FUNDS" for o in outcomes if isinstance(o, Exception))
    assert (await balance(ledger, uid)).available_kopecks == 0


async def test_batch_with_one_invalid_transfer_applies_nothing(ledger):
    uid = str(uuid.uuid4())
    batch = [accrual(uid, 100) for _ in range(5)] + [payment(uid, 10**6)]
    result = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=batch))
    assert not result.applied
    assert [r.status for r in result.results][-1] == ledger_pb2.TRANSFER_RESULT_STATUS_FAILED
    assert (await balance(ledger, uid)).posted_kopecks == 0
    good = [accrual(uid, 100, f"cashback:b{i}-{uid}") for i in range(5)]
    assert (await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=good))).applied
    replay = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=good))
    assert all(r.status == ledger_pb2.TRANSFER_RESULT_STATUS_ALREADY_EXISTED for r in replay.results)
    assert (await balance(ledger, uid)).posted_kopecks == 500


async def test_statement_is_newest_first_and_paginated(ledger):
    uid = str(uuid.uuid4())
    for i in range(5):
        await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 100 + i)))
    page1 = await ledger.ListStatement(ledger_pb2.ListStatementRequest(user_id=uid, page_size=3))
    page2 = await ledger.ListStatement(ledger_pb2.ListStatementRequest(user_id=uid, page_size=3,
                                                                        page_token=page1.next_page_token))
    amounts = [e.amount_kopecks for e in [*page1.entries, *page2.entries]]
    assert amounts == [104, 103, 102, 101, 100]
    assert page2.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.ListStatement(ledger_pb2.ListStatementRequest(user_id=uid, page_token="garbage!"))
    assert error_info(caught.value).reason == "PAGE_TOKEN_INVALID"
