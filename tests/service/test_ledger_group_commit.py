"""Single transfers are group-committed: calls that arrive together share one transaction, and each
caller still gets exactly what the call alone answers (a replay its stored transfer, a refusal its
own error), with the ledger's audit clean. The Ledger in-process on a real database, where calls
made in one turn of the event loop are known to go together; then the same over real gRPC."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.clock import SystemClock
from services.common.db import Database
from services.common.errors import DomainError
from services.common.grpc_client import error_info, open_channel
from services.common.migrate import upgrade_async
from services.ledger import domain
from services.ledger.domain import AccountRef, Kind, SystemAccount, TransferSpec
from services.ledger.service import Created, Ledger

FUNDING = AccountRef(system=SystemAccount.CASHBACK_FUNDING)
PAYMENTS = AccountRef(system=SystemAccount.MOBILE_PAYMENTS)


def accrual(uid: str, amount: int, tid: str | None = None) -> TransferSpec:
    return TransferSpec(tid or f"cashback:{uuid.uuid4()}", FUNDING, AccountRef(user_id=uid), amount, Kind.CASHBACK,
                        "", False, 0)


def payment(uid: str, amount: int, *, pending: bool = False) -> TransferSpec:
    return TransferSpec(f"mobile-payment:{uuid.uuid4()}", AccountRef(user_id=uid), PAYMENTS, amount,
                        Kind.MOBILE_PAYMENT, "", pending, 60 if pending else 0)


def new_user() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def ledger(new_database) -> AsyncIterator[Ledger]:
    url = await new_database("ledger")
    await upgrade_async("ledger", url)
    db = Database(url)
    ledger = Ledger(db, SystemClock())
    await ledger.ensure_system_accounts()
    yield ledger
    await db.dispose()


async def together(ledger: Ledger, specs: list[TransferSpec]) -> list[Created | BaseException]:
    """Every call started in the same turn of the event loop: one group commit, as the counters show."""
    batches, items = ledger.group_commit.batches, ledger.group_commit.items
    answers = await asyncio.gather(*(ledger.create_transfer(s) for s in specs), return_exceptions=True)
    assert (ledger.group_commit.batches - batches, ledger.group_commit.items - items) == (1, len(specs))
    return answers


async def available(ledger: Ledger, uid: str) -> int:
    return (await ledger.balance(uid)).available


async def assert_audit_clean(ledger: Ledger) -> None:
    report = await ledger.audit()
    assert report.ok, report.violations


async def test_singles_made_together_share_one_transaction_and_a_replay_gets_its_stored_transfer(ledger):
    payer, known_user = new_user(), new_user()
    await ledger.create_transfer(accrual(payer, 1000))
    known = (await ledger.create_transfer(accrual(known_user, 300, "cashback:known"))).transfer
    fresh = [accrual(new_user(), 100 + i) for i in range(10)]
    twice = accrual(new_user(), 50, f"cashback:{uuid.uuid4()}")
    pay = payment(payer, 400)

    answers = await together(ledger, [*fresh, accrual(known_user, 300, "cashback:known"), pay, twice, twice])

    assert all(isinstance(a, Created) for a in answers), answers
    *created, replay, paid, first, second = answers
    assert [(a.transfer.id, a.transfer.amount, a.already_existed) for a in created] == [
        (s.transfer_id, s.amount_kopecks, False) for s in fresh]
    assert replay.already_existed and replay.transfer.id == "cashback:known"
    assert replay.transfer.created_at == known.created_at  # the stored transfer, not a new one
    assert not paid.already_existed and paid.transfer.state == "POSTED"
    assert (first.already_existed, second.already_existed) == (False, True)  # the same id twice: created once
    assert second.transfer.created_at == first.transfer.created_at
    assert await available(ledger, payer) == 600
    assert await available(ledger, known_user) == 300
    assert await available(ledger, twice.credit.user_id) == 50
    await assert_audit_clean(ledger)


async def test_a_refusal_among_singles_made_together_is_its_callers_alone(ledger):
    payer, other = new_user(), new_user()
    await ledger.create_transfer(accrual(payer, 1000))
    await ledger.create_transfer(accrual(other, 300, "cashback:taken"))
    hold = payment(payer, 700, pending=True)
    overdraft = payment(payer, 301)  # 1000 - 700 held: 300 available
    conflicting = accrual(other, 999, "cashback:taken")
    fresh = [accrual(new_user(), 100) for _ in range(5)]

    answers = await together(ledger, [fresh[0], hold, overdraft, fresh[1], conflicting, *fresh[2:]])

    refused_overdraft, refused_conflict = answers[2], answers[4]
    assert isinstance(refused_overdraft, domain.InsufficientFunds), refused_overdraft
    assert isinstance(refused_conflict, domain.TransferExistsWithDifferentFields), refused_conflict
    assert refused_conflict.metadata == {"field": "amount_kopecks"}
    others = [a for i, a in enumerate(answers) if i not in (2, 4)]
    assert all(isinstance(a, Created) and not a.already_existed for a in others), others
    # Exactly what each call answers on its own, now.
    for spec, refused in ((overdraft, refused_overdraft), (conflicting, refused_conflict)):
        with pytest.raises(DomainError) as alone:
            await ledger.create_transfer(spec)
        assert (type(alone.value), alone.value.message, alone.value.reason, alone.value.metadata) == (
            type(refused), refused.message, refused.reason, refused.metadata)
    assert await available(ledger, payer) == 300
    assert await available(ledger, other) == 300
    await assert_audit_clean(ledger)


async def test_when_the_group_commit_fails_as_a_whole_each_transfer_is_applied_on_its_own(ledger, monkeypatch):
    async def batch_fails(specs: list[TransferSpec]) -> None:
        raise ConnectionResetError("the batch's transaction was lost")

    monkeypatch.setattr(ledger, "create_transfers", batch_fails)
    payer = new_user()
    await ledger.create_transfer(accrual(payer, 500))
    specs = [accrual(new_user(), 100) for _ in range(4)] + [payment(payer, 200), payment(payer, 400)]

    answers = await together(ledger, specs)

    assert [type(a).__name__ for a in answers] == ["Created"] * 5 + ["InsufficientFunds"]
    assert await available(ledger, payer) == 300
    await assert_audit_clean(ledger)


async def test_concurrent_single_calls_over_grpc_each_get_their_own_answer(start_service):
    service = await start_service("ledger")
    channel = open_channel(service.address, default_timeout=60)
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)

    def request(spec: TransferSpec) -> ledger_pb2.CreateTransferRequest:
        def ref(a: AccountRef) -> ledger_pb2.AccountRef:
            if a.user_id is not None:
                return ledger_pb2.AccountRef(user_id=a.user_id)
            return ledger_pb2.AccountRef(system=ledger_pb2.SystemAccount.Value(f"SYSTEM_ACCOUNT_{a.system}"))
        return ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
            transfer_id=spec.transfer_id, debit_account=ref(spec.debit), credit_account=ref(spec.credit),
            amount_kopecks=spec.amount_kopecks, kind=ledger_pb2.TransferKind.Value(f"TRANSFER_KIND_{spec.kind}")))

    try:
        payer, known_user = new_user(), new_user()
        await stub.CreateTransfer(request(accrual(payer, 1000)))
        known = await stub.CreateTransfer(request(accrual(known_user, 300, "cashback:grpc-known")))
        fresh = [accrual(new_user(), 100 + i) for i in range(40)]
        calls = [*fresh[:20], accrual(known_user, 300, "cashback:grpc-known"), payment(payer, 1001),
                 accrual(known_user, 301, "cashback:grpc-known"), payment(payer, 250), *fresh[20:]]

        answers = await asyncio.gather(*(stub.CreateTransfer(request(s)) for s in calls), return_exceptions=True)

        *head, replay, overdraft, conflict, paid = answers[:24]
        assert [(a.transfer.transfer_id, a.already_existed) for a in head + answers[24:]] == [
            (s.transfer_id, False) for s in fresh]
        assert replay.already_existed and replay.transfer == known.transfer
        assert isinstance(overdraft, grpc.aio.AioRpcError) and error_info(overdraft).reason == "INSUFFICIENT_FUNDS"
        assert isinstance(conflict, grpc.aio.AioRpcError) and conflict.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_info(conflict).metadata["field"] == "amount_kopecks"
        assert not paid.already_existed and paid.transfer.amount_kopecks == 250
        reply = await stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=payer))
        assert reply.balance.available_kopecks == 750
        audit = await stub.AuditLedger(ledger_pb2.AuditLedgerRequest())
        assert audit.ok and audit.transfers_checked == 2 + 40 + 1, audit.violations
    finally:
        await channel.close()
