"""The ledger over real gRPC with a real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy import text

from services.common.clock import FrozenClock
from services.common.db import Database
from services.common.grpc_client import error_info, open_channel
from services.ledger import domain
from services.ledger.domain import AccountRef, Kind, TransferSpec
from services.ledger.service import Ledger

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


@pytest.fixture
async def clocked(start_service):
    """A ledger on a frozen clock whose own expiry job never wakes up again (interval: an hour), and a
    second `Ledger` on the same database (a replica) whose expiry path the test calls by hand."""
    clock = FrozenClock()
    service = await start_service("ledger", clock=clock, expiry_interval_seconds=3600)
    channel = open_channel(service.address)
    db = Database(service.settings.database_url)
    yield ledger_pb2_grpc.LedgerServiceStub(channel), clock, Ledger(db, clock)
    await channel.close()
    await db.dispose()


async def test_a_hold_past_its_timeout_cannot_be_posted_even_before_the_expiry_job(clocked):
    stub, clock, _ = clocked
    uid = str(uuid.uuid4())
    await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 1000)))
    await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 700, pending=True, tid="h:1")))
    clock.advance(timedelta(seconds=60))  # the timeout is 60 s: due now
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PostPendingTransfer(ledger_pb2.PostPendingTransferRequest(transfer_id="h:1"))
    assert error_info(caught.value).reason == "TRANSFER_EXPIRED"
    b = await balance(stub, uid)
    assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks) == (1000, 0, 1000)
    voided = await stub.VoidPendingTransfer(ledger_pb2.VoidPendingTransferRequest(transfer_id="h:1"))
    assert voided.transfer.state == ledger_pb2.TRANSFER_STATE_EXPIRED
    assert (await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())).ok


async def test_the_expiry_job_releases_due_holds_only(clocked):
    stub, clock, replica = clocked
    uid = str(uuid.uuid4())
    await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 1000)))
    short = payment(uid, 300, pending=True, tid="h:short")
    long = payment(uid, 400, pending=True, tid="h:long")
    long.timeout_seconds = 120
    for t in (short, long):
        await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=t))
    clock.advance(timedelta(seconds=59))
    assert await replica.expire_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await replica.expire_due() == 1
    assert await replica.expire_due() == 0
    b = await balance(stub, uid)
    assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks) == (1000, 400, 600)
    got = await stub.GetTransfer(ledger_pb2.GetTransferRequest(transfer_id="h:short"))
    assert got.transfer.state == ledger_pb2.TRANSFER_STATE_EXPIRED and got.transfer.HasField("resolve_time")
    # A void after the job answers the expired hold; a post is refused; a replay changes nothing.
    voided = await stub.VoidPendingTransfer(ledger_pb2.VoidPendingTransferRequest(transfer_id="h:short"))
    assert voided.transfer.state == ledger_pb2.TRANSFER_STATE_EXPIRED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PostPendingTransfer(ledger_pb2.PostPendingTransferRequest(transfer_id="h:short"))
    assert error_info(caught.value).reason == "TRANSFER_EXPIRED"
    again = await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=short))
    assert again.already_existed and again.transfer.state == ledger_pb2.TRANSFER_STATE_EXPIRED
    assert (await balance(stub, uid)).available_kopecks == 600
    assert (await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())).ok


async def test_expiry_and_posts_racing_on_many_holds_keep_the_ledger_whole(clocked):
    """The expiry path of two replicas and posts/voids of the same holds, all at once: each hold
    ends in exactly one state, and no deadlock (one lock order everywhere)."""
    stub, clock, replica = clocked
    uid = str(uuid.uuid4())
    await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 100_000)))
    ids = [f"h:race:{i}" for i in range(30)]
    for tid in ids:
        await stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 1000, pending=True, tid=tid)))
    clock.advance(timedelta(seconds=60))
    calls = [replica.expire_due(limit=7), replica.expire_due(limit=11)]
    calls += [stub.PostPendingTransfer(ledger_pb2.PostPendingTransferRequest(transfer_id=t)) for t in ids[::2]]
    calls += [stub.VoidPendingTransfer(ledger_pb2.VoidPendingTransferRequest(transfer_id=t)) for t in ids[1::2]]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for o in outcomes:
        if isinstance(o, grpc.aio.AioRpcError):
            assert error_info(o).reason == "TRANSFER_EXPIRED"
        else:
            assert not isinstance(o, BaseException), o
    while await replica.expire_due():
        pass
    b = await balance(stub, uid)
    assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks) == (100_000, 0, 100_000)
    assert (await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())).ok


async def test_a_replay_with_other_fields_creates_no_account_and_changes_nothing(ledger):
    uid, other = str(uuid.uuid4()), str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 100, "cashback:r1")))
    before = await ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())
    for changed, field in ((accrual(other, 100, "cashback:r1"), "credit_account"),
                           (payment(uid, 100, tid="cashback:r1"), "debit_account")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=changed))
        assert error_info(caught.value).metadata["field"] == field
    after = await ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())
    assert (after.accounts_checked, after.transfers_checked) == (before.accounts_checked, before.transfers_checked)


async def test_concurrent_creators_of_one_id_create_it_once(ledger):
    uid, other = str(uuid.uuid4()), str(uuid.uuid4())
    same = [ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 100, "cashback:c1")))
            for _ in range(10)]
    replies = await asyncio.gather(*same)
    assert sorted(r.already_existed for r in replies) == [False] + [True] * 9
    # Other accounts for the same id: they race on the primary key, not on account locks.
    mixed = [ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(
        transfer=accrual(uid if i % 2 else other, 100, "cashback:c2"))) for i in range(10)]
    outcomes = await asyncio.gather(*mixed, return_exceptions=True)
    created = [o for o in outcomes if not isinstance(o, Exception) and not o.already_existed]
    assert len(created) == 1
    for o in outcomes:
        if isinstance(o, Exception):
            assert error_info(o).reason == "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS"
    b1, b2 = await balance(ledger, uid), await balance(ledger, other)
    assert b1.posted_kopecks + b2.posted_kopecks == 200
    assert (await ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())).ok


async def test_a_batch_mixing_replays_and_new_transfers_answers_each(ledger):
    """A replayed hold of the whole balance would be refused as a new transfer (insufficient
    funds): the batch's first try, which assumes new ids, must not answer with that."""
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 1000, f"cashback:m0-{uid}")))
    hold = payment(uid, 1000, pending=True, tid=f"hold:m-{uid}")
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=hold))
    fresh = [accrual(uid, 10, f"cashback:m{i}-{uid}") for i in range(1, 100)]
    reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=[hold, *fresh]))
    assert reply.applied
    assert [r.status for r in reply.results] == (
        [ledger_pb2.TRANSFER_RESULT_STATUS_ALREADY_EXISTED] + [ledger_pb2.TRANSFER_RESULT_STATUS_CREATED] * 99)
    b = await balance(ledger, uid)
    assert (b.posted_kopecks, b.pending_debits_kopecks, b.available_kopecks) == (1990, 1000, 990)
    # A new transfer that fails, beside a replay: the replay is reported as such, nothing applied.
    broke = payment(uid, 10**6, tid=f"mobile-payment:m-{uid}")
    reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=[hold, *fresh[:60], broke]))
    assert not reply.applied
    assert [(r.status, r.reason) for r in reply.results] == (
        [(ledger_pb2.TRANSFER_RESULT_STATUS_NOT_APPLIED, "")] * 61
        + [(ledger_pb2.TRANSFER_RESULT_STATUS_FAILED, "INSUFFICIENT_FUNDS")])
    assert (await balance(ledger, uid)).available_kopecks == 990
    assert (await ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())).ok


async def test_concurrent_batches_of_the_same_new_ids_create_each_once(ledger):
    """Batches large enough for the COPY path (PostgreSQL): the loser of the primary-key race
    retries and answers every transfer as already existing. Same accounts (the loser waits on the
    account locks) and other accounts (the loser waits on the winner's uncommitted rows)."""
    for round_, shift in enumerate((0, 1)):
        uids = [str(uuid.uuid4()) for _ in range(101)]
        batches = [ledger_pb2.CreateTransfersRequest(transfers=[
            accrual(uids[i + s], 100, f"cashback:batch-race:{round_}:{i}") for i in range(100)]) for s in (0, shift)]
        replies = await asyncio.gather(*(ledger.CreateTransfers(b) for b in batches), return_exceptions=True)
        statuses = sorted((r.applied, sorted({t.status for t in r.results}), sorted({t.reason for t in r.results}))
                          for r in replies)
        if shift:  # other accounts: the loser's replay names the differing field and applies nothing
            assert statuses == [(False, [ledger_pb2.TRANSFER_RESULT_STATUS_FAILED],
                                 ["TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT"]),
                                (True, [ledger_pb2.TRANSFER_RESULT_STATUS_CREATED], [""])]
        else:
            assert statuses == [(True, [ledger_pb2.TRANSFER_RESULT_STATUS_CREATED], [""]),
                                (True, [ledger_pb2.TRANSFER_RESULT_STATUS_ALREADY_EXISTED], [""])]
        totals = [(await balance(ledger, uid)).posted_kopecks for uid in uids]
        assert sum(totals) == 100 * 100
    assert (await ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())).ok


@pytest.mark.parametrize(("change", "reason"), [
    ({"timeout_seconds": 2**32}, "TIMEOUT_INVALID"),
    ({"timeout_seconds": -5}, "TIMEOUT_INVALID"),
    ({"reference": "r" * 201}, "REFERENCE_INVALID"),
    ({"amount_kopecks": 0}, "AMOUNT_INVALID"),
    ({"debit_account": ledger_pb2.AccountRef(user_id="u" * 65)}, "ACCOUNT_INVALID"),
])
async def test_out_of_range_fields_are_invalid_arguments(ledger, change, reason):
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 500)))
    t = payment(uid, 100, pending=True)
    for name, value in change.items():
        if isinstance(value, ledger_pb2.AccountRef):
            getattr(t, name).CopyFrom(value)
        else:
            setattr(t, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=t))
    assert error_info(caught.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == reason


async def test_a_batch_replayed_with_one_field_changed_applies_nothing_and_names_the_field(ledger):
    uid = str(uuid.uuid4())
    batch = [accrual(uid, 100, f"cashback:bf{i}-{uid}") for i in range(3)]
    assert (await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=batch))).applied
    changed = [accrual(uid, 100, f"cashback:bf{i}-{uid}") for i in range(3)] + [accrual(uid, 50)]
    changed[1].amount_kopecks = 101
    reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=changed))
    assert not reply.applied
    assert [(r.status, r.reason) for r in reply.results] == [
        (ledger_pb2.TRANSFER_RESULT_STATUS_NOT_APPLIED, ""),
        (ledger_pb2.TRANSFER_RESULT_STATUS_FAILED, "TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT_KOPECKS"),
        (ledger_pb2.TRANSFER_RESULT_STATUS_NOT_APPLIED, ""),
        (ledger_pb2.TRANSFER_RESULT_STATUS_NOT_APPLIED, ""),
    ]
    assert (await balance(ledger, uid)).posted_kopecks == 300
    # Within one batch: the same id twice with identical fields is one transfer.
    twice = [accrual(uid, 70, f"cashback:tw-{uid}"), accrual(uid, 70, f"cashback:tw-{uid}")]
    reply = await ledger.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=twice))
    assert [r.status for r in reply.results] == [ledger_pb2.TRANSFER_RESULT_STATUS_CREATED,
                                                 ledger_pb2.TRANSFER_RESULT_STATUS_ALREADY_EXISTED]
    assert (await balance(ledger, uid)).posted_kopecks == 370


async def test_concurrent_replays_of_a_hold_of_the_whole_balance_are_replays_not_refusals(ledger):
    uid = str(uuid.uuid4())
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 1000)))
    same = payment(uid, 1000, pending=True, tid=f"mobile-payment:whole-{uid}")
    replies = await asyncio.gather(*(ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=same))
                                     for _ in range(10)))
    assert sorted(r.already_existed for r in replies) == [False] + [True] * 9
    assert (await balance(ledger, uid)).available_kopecks == 0


async def test_a_transfer_to_a_missing_system_account_fails_loudly_and_applies_nothing(clocked):
    """Transfers have no foreign keys to accounts (see models.Transfer): the UPDATE of a system
    account's counters must find its row, or the whole transaction fails."""
    stub, _, replica = clocked
    async with replica._db.transaction() as session:
        await session.execute(text("DELETE FROM accounts WHERE id = 'system:REFERRAL_FUNDING'"))
    uid = str(uuid.uuid4())
    spec = TransferSpec("referral:missing-funding", AccountRef(system=domain.SystemAccount.REFERRAL_FUNDING),
                        AccountRef(user_id=uid), 500, Kind.REFERRAL_BONUS, "", False, 0)
    with pytest.raises(LookupError, match="REFERRAL_FUNDING"):
        await replica.create_transfer(spec)
    with pytest.raises(LookupError, match="REFERRAL_FUNDING"):
        await replica.create_transfers([spec])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTransfer(ledger_pb2.GetTransferRequest(transfer_id="referral:missing-funding"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await balance(stub, uid)).posted_kopecks == 0
