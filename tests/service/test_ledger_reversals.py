"""Reversals and debts over real gRPC with a real database: a credit taken back takes what the user
has available, the shortfall becomes a debt that the next credits (single, batched, or a posted
hold) repay first; the user's account never goes below zero and the audit holds throughout."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy import text

from services.common.db import Database
from services.common.grpc_client import error_info, open_channel
from tests.service.test_ledger import accrual, balance, payment

CASHBACK_FUNDING = ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING


@pytest.fixture
async def service(start_service):
    started = await start_service("ledger")
    channel = open_channel(started.address, default_timeout=30)
    yield ledger_pb2_grpc.LedgerServiceStub(channel), started
    await channel.close()


@pytest.fixture
def ledger(service):
    return service[0]


def reversal(uid: str, amount: int, rid: str | None = None, *, system: int = CASHBACK_FUNDING,
             reference: str = "purchase-1") -> ledger_pb2.ReverseCreditRequest:
    return ledger_pb2.ReverseCreditRequest(reversal_id=rid or f"reversal:{uuid.uuid4()}", user_id=uid,
                                           amount_kopecks=amount, system=system, reference=reference)


async def credit(stub, uid: str, amount: int, tid: str | None = None) -> ledger_pb2.CreateTransferResponse:
    return await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, amount, tid)))


async def figures(stub, uid: str) -> tuple[int, int, int]:
    """(posted, available, debt)"""
    b = await balance(stub, uid)
    return b.posted_kopecks, b.available_kopecks, b.debt_kopecks


async def statement(stub, uid: str) -> list[tuple[str, str, str, int, str]]:
    """(transfer_id, kind, direction, amount, counterparty system), newest first."""
    entries = (await stub.ListStatement(ledger_pb2.ListStatementRequest(user_id=uid, page_size=100))).entries
    return [(e.transfer_id, ledger_pb2.TransferKind.Name(e.kind).removeprefix("TRANSFER_KIND_"),
             ledger_pb2.EntryDirection.Name(e.direction).removeprefix("ENTRY_DIRECTION_"), e.amount_kopecks,
             ledger_pb2.SystemAccount.Name(e.counterparty_system).removeprefix("SYSTEM_ACCOUNT_")) for e in entries]


async def assert_audit_clean(stub) -> ledger_pb2.AuditLedgerResponse:
    audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())
    assert audit.ok and audit.posted_sum_kopecks == 0, list(audit.violations)
    return audit


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_a_reversal_within_the_balance_takes_the_cashback_back(ledger):
    uid = str(uuid.uuid4())
    await credit(ledger, uid, 1000, f"cashback:{uid}")
    reply = await ledger.ReverseCredit(reversal(uid, 400, f"reversal:{uid}", reference="purchase-7"))
    assert (reply.taken_kopecks, reply.debt_kopecks, reply.already_existed) == (400, 0, False)
    assert await figures(ledger, uid) == (600, 600, 0)
    assert await statement(ledger, uid) == [
        (f"reversal:{uid}", "CASHBACK_REVERSAL", "DEBIT", 400, "CASHBACK_FUNDING"),
        (f"cashback:{uid}", "CASHBACK", "CREDIT", 1000, "CASHBACK_FUNDING"),
    ]
    await assert_audit_clean(ledger)


async def test_a_reversal_of_spent_points_leaves_a_debt_and_the_next_credits_repay_it_first(ledger):
    uid = str(uuid.uuid4())
    await credit(ledger, uid, 1000, f"cashback:1:{uid}")
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 800, tid=f"pay:{uid}")))
    reply = await ledger.ReverseCredit(reversal(uid, 1000, f"reversal:{uid}"))
    assert (reply.taken_kopecks, reply.debt_kopecks) == (200, 800)
    assert await figures(ledger, uid) == (0, 0, 800)
    spent = await refused(ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 1))))
    assert error_info(spent).reason == "INSUFFICIENT_FUNDS"
    await assert_audit_clean(ledger)

    await credit(ledger, uid, 500, f"cashback:2:{uid}")  # all of it repays
    assert await figures(ledger, uid) == (0, 0, 300)
    await credit(ledger, uid, 1000, f"cashback:3:{uid}")  # 300 repays, 700 stays
    assert await figures(ledger, uid) == (700, 700, 0)
    await credit(ledger, uid, 50, f"cashback:4:{uid}")  # no debt left: nothing more repaid
    assert await figures(ledger, uid) == (750, 750, 0)
    assert await statement(ledger, uid) == [
        (f"cashback:4:{uid}", "CASHBACK", "CREDIT", 50, "CASHBACK_FUNDING"),
        (f"cashback:3:{uid}:repay", "DEBT_REPAYMENT", "DEBIT", 300, "DEBTS"),
        (f"cashback:3:{uid}", "CASHBACK", "CREDIT", 1000, "CASHBACK_FUNDING"),
        (f"cashback:2:{uid}:repay", "DEBT_REPAYMENT", "DEBIT", 500, "DEBTS"),
        (f"cashback:2:{uid}", "CASHBACK", "CREDIT", 500, "CASHBACK_FUNDING"),
        (f"reversal:{uid}", "CASHBACK_REVERSAL", "DEBIT", 200, "CASHBACK_FUNDING"),
        (f"pay:{uid}", "MOBILE_PAYMENT", "DEBIT", 800, "MOBILE_PAYMENTS"),
        (f"cashback:1:{uid}", "CASHBACK", "CREDIT", 1000, "CASHBACK_FUNDING"),
    ]
    await assert_audit_clean(ledger)


async def test_a_reversal_with_nothing_available_is_all_debt_even_for_a_user_never_credited(ledger):
    uid, newcomer = str(uuid.uuid4()), str(uuid.uuid4())
    await credit(ledger, uid, 1000)
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 1000, pending=True)))
    reply = await ledger.ReverseCredit(reversal(uid, 600))  # the points are held: nothing is available
    assert (reply.taken_kopecks, reply.debt_kopecks) == (0, 600)
    b = await balance(ledger, uid)
    assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks, b.debt_kopecks) == (1000, 1000, 0, 600)
    reply = await ledger.ReverseCredit(reversal(newcomer, 250, system=ledger_pb2.SYSTEM_ACCOUNT_REFERRAL_FUNDING))
    assert (reply.taken_kopecks, reply.debt_kopecks) == (0, 250)
    assert await figures(ledger, newcomer) == (0, 0, 250)
    assert await statement(ledger, newcomer) == []  # nothing left the points; the debt is in the balance
    await assert_audit_clean(ledger)


async def test_a_replayed_reversal_and_a_replayed_credit_change_nothing(ledger):
    uid = str(uuid.uuid4())
    await credit(ledger, uid, 300)
    first = await ledger.ReverseCredit(reversal(uid, 1000, f"reversal:{uid}"))
    again = await ledger.ReverseCredit(reversal(uid, 1000, f"reversal:{uid}"))
    assert (first.taken_kopecks, first.debt_kopecks, first.already_existed) == (300, 700, False)
    assert (again.taken_kopecks, again.debt_kopecks, again.already_existed) == (300, 700, True)
    await credit(ledger, uid, 500, f"cashback:{uid}")
    before = await assert_audit_clean(ledger)
    replayed = await credit(ledger, uid, 500, f"cashback:{uid}")
    assert replayed.already_existed
    assert await figures(ledger, uid) == (0, 0, 200)
    after = await assert_audit_clean(ledger)
    assert after.transfers_checked == before.transfers_checked


@pytest.mark.parametrize(("change", "field"), [
    ({"amount_kopecks": 999}, "amount_kopecks"),
    ({"user_id": "someone-else"}, "user_id"),
    ({"system": ledger_pb2.SYSTEM_ACCOUNT_SERVICE_FUNDING}, "system"),
    ({"reference": "purchase-2"}, "reference"),
])
async def test_the_same_reversal_id_with_other_fields_is_refused_naming_the_field(ledger, change, field):
    uid = str(uuid.uuid4())
    await ledger.ReverseCredit(reversal(uid, 1000, f"reversal:{uid}"))  # all debt: only the record names the user
    before = await assert_audit_clean(ledger)
    changed = reversal(uid, 1000, f"reversal:{uid}")
    for name, value in change.items():
        setattr(changed, name, value)
    info = error_info(await refused(ledger.ReverseCredit(changed)))
    assert (info.code, info.reason, info.metadata["field"]) == (
        grpc.StatusCode.ALREADY_EXISTS, "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS", field)
    assert await figures(ledger, uid) == (0, 0, 1000)
    after = await assert_audit_clean(ledger)
    assert (after.accounts_checked, after.transfers_checked) == (before.accounts_checked, before.transfers_checked)


async def test_a_reversal_id_that_is_a_transfer_id_is_refused(ledger):
    uid = str(uuid.uuid4())
    await credit(ledger, uid, 1000, f"cashback:{uid}")
    info = error_info(await refused(ledger.ReverseCredit(reversal(uid, 100, f"cashback:{uid}"))))
    assert (info.code, info.reason, info.metadata["field"]) == (
        grpc.StatusCode.ALREADY_EXISTS, "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS", "kind")
    assert await figures(ledger, uid) == (1000, 1000, 0)


@pytest.mark.parametrize(("change", "reason"), [
    ({"system": ledger_pb2.SYSTEM_ACCOUNT_MOBILE_PAYMENTS}, "KIND_NOT_ALLOWED_FOR_ACCOUNTS"),
    ({"system": ledger_pb2.SYSTEM_ACCOUNT_DEBTS}, "KIND_NOT_ALLOWED_FOR_ACCOUNTS"),
    ({"system": ledger_pb2.SYSTEM_ACCOUNT_UNSPECIFIED}, "KIND_NOT_ALLOWED_FOR_ACCOUNTS"),
    ({"amount_kopecks": 0}, "AMOUNT_INVALID"),
    ({"amount_kopecks": -5}, "AMOUNT_INVALID"),
    ({"user_id": ""}, "ACCOUNT_INVALID"),
    ({"reversal_id": ""}, "TRANSFER_ID_INVALID"),
    ({"reversal_id": "r" * 129}, "TRANSFER_ID_INVALID"),
    ({"reversal_id": "reversal:1:debt"}, "TRANSFER_ID_INVALID"),
    ({"reference": "r" * 201}, "REFERENCE_INVALID"),
])
async def test_a_bad_reversal_is_an_invalid_argument_and_takes_nothing(ledger, change, reason):
    uid = str(uuid.uuid4())
    await credit(ledger, uid, 1000)
    request = reversal(uid, 100)
    for name, value in change.items():
        setattr(request, name, value)
    info = error_info(await refused(ledger.ReverseCredit(request)))
    assert (info.code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert await figures(ledger, uid) == (1000, 1000, 0)


async def test_callers_cannot_write_the_ledgers_own_transfers(ledger):
    uid = str(uuid.uuid4())
    await credit(ledger, uid, 1000, f"cashback:{uid}")
    debts = ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_DEBTS)
    funding = ledger_pb2.AccountRef(system=CASHBACK_FUNDING)
    user = ledger_pb2.AccountRef(user_id=uid)
    forged = [
        ledger_pb2.Transfer(transfer_id="x:1", debit_account=user, credit_account=funding, amount_kopecks=100,
                            kind=ledger_pb2.TRANSFER_KIND_CASHBACK_REVERSAL),
        ledger_pb2.Transfer(transfer_id="x:2", debit_account=user, credit_account=debts, amount_kopecks=100,
                            kind=ledger_pb2.TRANSFER_KIND_DEBT_REPAYMENT),
        ledger_pb2.Transfer(transfer_id="x:3", debit_account=debts, credit_account=user, amount_kopecks=100,
                            kind=ledger_pb2.TRANSFER_KIND_CASHBACK),
    ]
    for t in forged:
        info = error_info(await refused(ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=t))))
        assert (info.code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "KIND_NOT_ALLOWED_FOR_ACCOUNTS")
        reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=[t]))
        assert not reply.applied and reply.results[0].reason == "KIND_NOT_ALLOWED_FOR_ACCOUNTS"
    # The ids the ledger derives (`:repay`, `:debt`) are its own too.
    info = error_info(await refused(credit(ledger, uid, 100, f"cashback:{uid}:repay")))
    assert info.reason == "TRANSFER_ID_INVALID"
    assert await figures(ledger, uid) == (1000, 1000, 0)


async def test_a_reversal_racing_a_hold_on_the_same_points_never_overdraws(ledger, backend):
    """Either the hold wins (the reversal finds nothing available: all debt) or the reversal does
    (the hold is refused): never both, and the account never goes below zero."""
    outcomes = set()
    for _ in range(30 if backend == "postgres" else 8):
        uid = str(uuid.uuid4())
        await credit(ledger, uid, 1000)
        hold, rev = await asyncio.gather(
            ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 1000, pending=True))),
            ledger.ReverseCredit(reversal(uid, 1000)), return_exceptions=True)
        assert isinstance(rev, ledger_pb2.ReverseCreditResponse), rev
        b = await balance(ledger, uid)
        if isinstance(hold, grpc.aio.AioRpcError):
            assert error_info(hold).reason == "INSUFFICIENT_FUNDS"
            assert (rev.taken_kopecks, rev.debt_kopecks) == (1000, 0)
            assert (b.posted_kopecks, b.pending_debits_kopecks, b.debt_kopecks) == (0, 0, 0)
            outcomes.add("reversal first")
        else:
            assert (rev.taken_kopecks, rev.debt_kopecks) == (0, 1000)
            assert (b.posted_kopecks, b.pending_debits_kopecks, b.debt_kopecks) == (1000, 1000, 1000)
            outcomes.add("hold first")
        assert b.available_kopecks == 0
    assert outcomes  # which orders occurred is up to the scheduler; each was checked above
    await assert_audit_clean(ledger)


async def test_concurrent_creators_of_one_reversal_apply_it_once(ledger):
    uid, other = str(uuid.uuid4()), str(uuid.uuid4())
    await credit(ledger, uid, 500)
    replies = await asyncio.gather(*(ledger.ReverseCredit(reversal(uid, 800, f"reversal:c1:{uid}"))
                                     for _ in range(10)))
    assert sorted(r.already_existed for r in replies) == [False] + [True] * 9
    assert {(r.taken_kopecks, r.debt_kopecks) for r in replies} == {(500, 300)}
    assert await figures(ledger, uid) == (0, 0, 300)
    # Two users for one id: they race on the primary key, not on a lock; one wins.
    mixed = await asyncio.gather(*(ledger.ReverseCredit(reversal(uid if i % 2 else other, 100, f"reversal:c2:{uid}"))
                                   for i in range(10)), return_exceptions=True)
    created = [m for m in mixed if isinstance(m, ledger_pb2.ReverseCreditResponse) and not m.already_existed]
    assert len(created) == 1
    for m in mixed:
        if isinstance(m, grpc.aio.AioRpcError):
            assert error_info(m).metadata["field"] == "user_id"
    assert (await balance(ledger, uid)).debt_kopecks + (await balance(ledger, other)).debt_kopecks == 400
    await assert_audit_clean(ledger)


async def test_batched_credits_repay_first_and_a_replayed_batch_repays_nothing_more(ledger):
    uid, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    await ledger.ReverseCredit(reversal(uid, 800))
    # 60 credits of 20 and one for somebody else: 40 of them repay (100 rows: PostgreSQL's COPY path).
    batch = [accrual(uid, 20, f"cashback:b{i}:{uid}") for i in range(60)] + [accrual(bystander, 70)]
    reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=batch))
    assert reply.applied
    assert {r.status for r in reply.results} == {ledger_pb2.TRANSFER_RESULT_STATUS_CREATED}
    assert [r.transfer_id for r in reply.results] == [t.transfer_id for t in batch]  # repayments are not results
    assert await figures(ledger, uid) == (400, 400, 0)
    assert await figures(ledger, bystander) == (70, 70, 0)
    repaid = [e for e in await statement(ledger, uid) if e[1] == "DEBT_REPAYMENT"]
    assert sorted(e[0] for e in repaid) == sorted(f"cashback:b{i}:{uid}:repay" for i in range(40))
    assert sum(e[3] for e in repaid) == 800
    again = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=batch))
    assert {r.status for r in again.results} == {ledger_pb2.TRANSFER_RESULT_STATUS_ALREADY_EXISTED}
    assert await figures(ledger, uid) == (400, 400, 0)
    await assert_audit_clean(ledger)


async def test_in_a_batch_a_credit_repays_before_a_spend_can_use_it(ledger):
    uid = str(uuid.uuid4())
    await ledger.ReverseCredit(reversal(uid, 500))
    spend = payment(uid, 200)
    reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=[accrual(uid, 600), spend]))
    assert not reply.applied and reply.results[1].reason == "INSUFFICIENT_FUNDS"  # 600 − 500 repaid = 100
    assert await figures(ledger, uid) == (0, 0, 500)
    spend.amount_kopecks = 100
    reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=[accrual(uid, 600), spend]))
    assert reply.applied
    assert await figures(ledger, uid) == (0, 0, 0)
    await assert_audit_clean(ledger)


async def test_a_pending_credit_repays_when_it_is_posted(ledger):
    uid = str(uuid.uuid4())
    await ledger.ReverseCredit(reversal(uid, 300))
    held = accrual(uid, 1000, f"cashback:held:{uid}")
    held.pending, held.timeout_seconds = True, 600
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=held))
    b = await balance(ledger, uid)
    assert (b.posted_kopecks, b.pending_credits_kopecks, b.debt_kopecks) == (0, 1000, 300)
    for _ in range(2):  # posting again is a replay: nothing more repaid
        await ledger.PostPendingTransfer(ledger_pb2.PostPendingTransferRequest(transfer_id=held.transfer_id))
    assert await figures(ledger, uid) == (700, 700, 0)
    assert (await statement(ledger, uid))[0] == (f"cashback:held:{uid}:repay", "DEBT_REPAYMENT", "DEBIT", 300, "DEBTS")
    await assert_audit_clean(ledger)


async def test_the_audit_sees_a_debt_that_does_not_match_what_debts_is_owed(service):
    stub, started = service
    uid = str(uuid.uuid4())
    await stub.ReverseCredit(reversal(uid, 700))
    await assert_audit_clean(stub)
    db = Database(started.settings.database_url)
    try:
        async with db.transaction() as session:
            await session.execute(text("UPDATE accounts SET debt_kopecks = 600 WHERE id = :id"), {"id": f"user:{uid}"})
    finally:
        await db.dispose()
    audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())
    assert not audit.ok
    assert list(audit.violations) == ["users owe 600 kopecks, but system:DEBTS is owed 700"]
