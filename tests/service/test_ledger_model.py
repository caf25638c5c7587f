"""A model of the ledger, checked against the real service over gRPC (PostgreSQL, or SQLite in the
embedded run) by Hypothesis: accruals, spends, holds, posts, voids, the clock moving, the expiry
job, replays with the same and with other fields, batches (some with an invalid transfer),
reversals (what is available is taken, the rest becomes debt that the next credits repay first)
and their replays, and after every step the invariants: every user's balance and debt equal the
model's, no user account is negative, available = posted − pending debits, and the service's own
audit passes (sum zero, counters equal the sums of transfers, debts equal what DEBTS is owed).

The seed is printed; replay a failure with LEDGER_MODEL_SEED=<seed> (Hypothesis also prints a
`@reproduce_failure` blob). LEDGER_MODEL_EXAMPLES / LEDGER_MODEL_STEPS make the run longer.

Hypothesis drives the machine synchronously in a worker thread; every call goes to the test's
event loop, where the service runs, and waits for the answer.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from services.common.clock import FrozenClock
from services.common.db import Database
from services.common.grpc_client import error_info, open_channel
from services.ledger.service import Ledger

EXAMPLES = int(os.environ.get("LEDGER_MODEL_EXAMPLES", "40"))
STEPS = int(os.environ.get("LEDGER_MODEL_STEPS", "30"))

SYSTEM = {
    "CASHBACK": ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING,
    "REFERRAL_BONUS": ledger_pb2.SYSTEM_ACCOUNT_REFERRAL_FUNDING,
    "SERVICE_ACTIVATION": ledger_pb2.SYSTEM_ACCOUNT_SERVICE_FUNDING,
    "MOBILE_PAYMENT": ledger_pb2.SYSTEM_ACCOUNT_MOBILE_PAYMENTS,
    "CERTIFICATE": ledger_pb2.SYSTEM_ACCOUNT_CERTIFICATES,
}
ACCRUAL_KINDS = ["CASHBACK", "REFERRAL_BONUS", "SERVICE_ACTIVATION"]
FUNDING = [ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING, ledger_pb2.SYSTEM_ACCOUNT_REFERRAL_FUNDING,
           ledger_pb2.SYSTEM_ACCOUNT_SERVICE_FUNDING]
SPEND_KINDS = ["MOBILE_PAYMENT", "CERTIFICATE"]
STATE_NAMES = {v: k.removeprefix("TRANSFER_STATE_") for k, v in ledger_pb2.TransferState.items()}


def make_transfer(kind: str, uid: str, amount: int, *, pending: bool = False,
                  timeout_seconds: int = 0) -> ledger_pb2.Transfer:
    user = ledger_pb2.AccountRef(user_id=uid)
    system = ledger_pb2.AccountRef(system=SYSTEM[kind])
    accrual = kind in ACCRUAL_KINDS
    return ledger_pb2.Transfer(
        transfer_id=f"{kind.lower()}:{uuid.uuid4()}", debit_account=system if accrual else user,
        credit_account=user if accrual else system, amount_kopecks=amount,
        kind=ledger_pb2.TransferKind.Value(f"TRANSFER_KIND_{kind}"), reference=f"ref-{uuid.uuid4().hex[:8]}",
        pending=pending, timeout_seconds=timeout_seconds,
    )


@dataclass
class Known:
    """What the model knows of one transfer."""

    pb: ledger_pb2.Transfer
    uid: str
    state: str  # POSTED | PENDING | VOIDED | EXPIRED
    timeout_at: datetime | None = None

    @property
    def is_debit(self) -> bool:
        return self.pb.debit_account.WhichOneof("account") == "user_id"


@dataclass
class Harness:
    call: Callable[[Callable[[], Awaitable[Any]]], Any]  # runs a coroutine on the service's loop
    stub: ledger_pb2_grpc.LedgerServiceStub
    clock: FrozenClock
    replica: Ledger  # another instance on the same database: the expiry path is called on it


class LedgerModel(RuleBasedStateMachine):
    harness: Harness  # set by the test before the machine runs

    users = Bundle("users")
    transfers = Bundle("transfers")
    holds = Bundle("holds")
    reversals = Bundle("reversals")

    def __init__(self) -> None:
        super().__init__()
        # Per user: [posted, pending debits, debt]. Users are new in every example, so the model owns them.
        self.balances: dict[str, list[int]] = {}
        self.known: dict[str, Known] = {}
        # Per reversal id: the request and its answer (taken, debt).
        self.reversed: dict[str, tuple[ledger_pb2.ReverseCreditRequest, int, int]] = {}

    # ---- helpers -------------------------------------------------------------------------------

    def rpc(self, method: str, request: Any) -> Any:
        return self.harness.call(lambda: getattr(self.harness.stub, method)(request))

    def refused(self, method: str, request: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
        try:
            self.rpc(method, request)
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            return info.code, info.reason, info.metadata
        raise AssertionError(f"{method} was expected to fail")

    def available(self, uid: str) -> int:
        posted, pending, _ = self.balances[uid]
        return posted - pending

    def now(self) -> datetime:
        return self.harness.clock.now()

    def apply_new(self, t: ledger_pb2.Transfer, uid: str, balances: dict[str, list[int]]) -> None:
        b = balances[uid]
        if t.pending:
            b[1] += t.amount_kopecks
        elif t.debit_account.WhichOneof("account") == "user_id":
            b[0] -= t.amount_kopecks
        else:  # a posted credit repays the debt first
            repaid = min(t.amount_kopecks, b[2])
            b[0] += t.amount_kopecks - repaid
            b[2] -= repaid

    def remember(self, t: ledger_pb2.Transfer, uid: str) -> None:
        timeout_at = self.now() + timedelta(seconds=t.timeout_seconds) if t.pending else None
        self.known[t.transfer_id] = Known(t, uid, "PENDING" if t.pending else "POSTED", timeout_at)

    def release(self, k: Known, to: str) -> None:
        self.balances[k.uid][1] -= k.pb.amount_kopecks
        if to == "POSTED":
            self.balances[k.uid][0] -= k.pb.amount_kopecks
        k.state = to

    def due(self, k: Known) -> bool:
        return k.state == "PENDING" and k.timeout_at is not None and k.timeout_at <= self.now()

    # ---- rules ---------------------------------------------------------------------------------

    @initialize(target=users)
    def first_user(self) -> str:
        uid = str(uuid.uuid4())
        self.balances[uid] = [0, 0, 0]
        return uid

    @precondition(lambda self: len(self.balances) < 3)
    @rule(target=users)
    def another_user(self) -> str:
        return self.first_user()

    @rule(target=transfers, uid=users, amount=st.integers(1, 50_000), kind=st.sampled_from(ACCRUAL_KINDS))
    def accrue(self, uid: str, amount: int, kind: str) -> str:
        t = make_transfer(kind, uid, amount)
        reply = self.rpc("CreateTransfer", ledger_pb2.CreateTransferRequest(transfer=t))
        assert not reply.already_existed and reply.transfer.state == ledger_pb2.TRANSFER_STATE_POSTED
        self.apply_new(t, uid, self.balances)
        self.remember(t, uid)
        return t.transfer_id

    @rule(target=transfers, uid=users, amount=st.integers(1, 60_000), kind=st.sampled_from(SPEND_KINDS))
    def spend(self, uid: str, amount: int, kind: str) -> Any:
        t = make_transfer(kind, uid, amount)
        if amount > self.available(uid):
            code, reason, _ = self.refused("CreateTransfer", ledger_pb2.CreateTransferRequest(transfer=t))
            assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
            return multiple()
        self.rpc("CreateTransfer", ledger_pb2.CreateTransferRequest(transfer=t))
        self.apply_new(t, uid, self.balances)
        self.remember(t, uid)
        return t.transfer_id

    @rule(target=holds, uid=users, amount=st.integers(1, 60_000), timeout=st.integers(1, 120),
          kind=st.sampled_from(SPEND_KINDS))
    def hold(self, uid: str, amount: int, timeout: int, kind: str) -> Any:
        t = make_transfer(kind, uid, amount, pending=True, timeout_seconds=timeout)
        if amount > self.available(uid):
            _, reason, _ = self.refused("CreateTransfer", ledger_pb2.CreateTransferRequest(transfer=t))
            assert reason == "INSUFFICIENT_FUNDS"
            return multiple()
        reply = self.rpc("CreateTransfer", ledger_pb2.CreateTransferRequest(transfer=t))
        assert reply.transfer.state == ledger_pb2.TRANSFER_STATE_PENDING
        self.apply_new(t, uid, self.balances)
        self.remember(t, uid)
        return t.transfer_id

    @rule(tid=holds)
    def post(self, tid: str) -> None:
        k = self.known[tid]
        request = ledger_pb2.PostPendingTransferRequest(transfer_id=tid)
        if self.due(k):
            self.release(k, "EXPIRED")
        if k.state in ("PENDING", "POSTED"):
            reply = self.rpc("PostPendingTransfer", request)
            assert reply.transfer.state == ledger_pb2.TRANSFER_STATE_POSTED
            if k.state == "PENDING":
                self.release(k, "POSTED")
            return
        _, reason, _ = self.refused("PostPendingTransfer", request)
        assert reason == {"VOIDED": "TRANSFER_ALREADY_VOIDED", "EXPIRED": "TRANSFER_EXPIRED"}[k.state]

    @rule(tid=holds)
    def void(self, tid: str) -> None:
        k = self.known[tid]
        request = ledger_pb2.VoidPendingTransferRequest(transfer_id=tid)
        if self.due(k):
            self.release(k, "EXPIRED")
        if k.state == "POSTED":
            _, reason, _ = self.refused("VoidPendingTransfer", request)
            assert reason == "TRANSFER_ALREADY_POSTED"
            return
        if k.state == "PENDING":
            self.release(k, "VOIDED")
        reply = self.rpc("VoidPendingTransfer", request)
        assert STATE_NAMES[reply.transfer.state] == k.state

    @rule(seconds=st.integers(1, 200))
    def advance_clock(self, seconds: int) -> None:
        self.harness.clock.advance(timedelta(seconds=seconds))

    @rule()
    def expire(self) -> None:
        while self.harness.call(lambda: self.harness.replica.expire_due(limit=50)):
            pass
        for k in self.known.values():
            if self.due(k):
                self.release(k, "EXPIRED")

    @rule(tid=st.one_of(transfers, holds))
    def replay_same(self, tid: str) -> None:
        k = self.known[tid]
        reply = self.rpc("CreateTransfer", ledger_pb2.CreateTransferRequest(transfer=k.pb))
        assert reply.already_existed and STATE_NAMES[reply.transfer.state] == k.state

    @rule(tid=st.one_of(transfers, holds), change=st.sampled_from(["amount", "reference", "pending", "account"]),
          other=users)
    def replay_different(self, tid: str, change: str, other: str) -> None:
        k = self.known[tid]
        t = ledger_pb2.Transfer()
        t.CopyFrom(k.pb)
        if change == "amount":
            t.amount_kopecks += 1
            field = "amount_kopecks"
        elif change == "reference":
            t.reference += "-changed"
            field = "reference"
        elif change == "pending":
            t.pending = not t.pending
            t.timeout_seconds = 0 if t.pending is False else 60
            field = "pending"
        else:
            side = t.debit_account if k.is_debit else t.credit_account
            side.user_id = other if other != k.uid else str(uuid.uuid4())
            field = "debit_account" if k.is_debit else "credit_account"
        code, reason, metadata = self.refused("CreateTransfer", ledger_pb2.CreateTransferRequest(transfer=t))
        assert (code, reason, metadata.get("field")) == (
            grpc.StatusCode.ALREADY_EXISTS, "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS", field)

    @rule(target=transfers, uid=users, amounts=st.lists(st.integers(1, 20_000), min_size=1, max_size=6),
          replayed=st.lists(transfers, max_size=3), spend=st.integers(0, 80_000), spoil=st.booleans())
    def batch(self, uid: str, amounts: list[int], replayed: list[str], spend: int, spoil: bool) -> Any:
        """New accruals, replays of known transfers, and a spend at the end; with `spoil`, one
        transfer is invalid (a zero amount). All or nothing, checked against the model."""
        items = [make_transfer("CASHBACK", uid, a) for a in amounts]
        items += [self.known[tid].pb for tid in replayed]
        if spend:
            items.append(make_transfer("CERTIFICATE", uid, spend))
        if spoil:
            items.insert(len(items) // 2, make_transfer("CASHBACK", uid, 0))
        trial = {u: list(b) for u, b in self.balances.items()}
        ok, seen = True, set()
        for t in items:
            if t.transfer_id in self.known or t.transfer_id in seen:
                continue
            owner = uid
            if t.amount_kopecks <= 0 or (t.debit_account.user_id == owner
                                         and t.amount_kopecks > trial[owner][0] - trial[owner][1]):
                ok = False
                break
            self.apply_new(t, owner, trial)
            seen.add(t.transfer_id)
        reply = self.rpc("CreateTransfers", ledger_pb2.CreateTransfersRequest(transfers=items))
        assert reply.applied == ok, [(r.transfer_id, r.status, r.reason) for r in reply.results]
        if not ok:
            failed = [r for r in reply.results if r.status == ledger_pb2.TRANSFER_RESULT_STATUS_FAILED]
            assert failed and all(r.reason in ("AMOUNT_INVALID", "INSUFFICIENT_FUNDS") for r in failed)
            return multiple()
        for t, r in zip(items, reply.results, strict=True):
            new = t.transfer_id in seen and t.transfer_id not in self.known
            assert r.status == (ledger_pb2.TRANSFER_RESULT_STATUS_CREATED if new
                                else ledger_pb2.TRANSFER_RESULT_STATUS_ALREADY_EXISTED)
            if new:
                self.remember(t, uid)
        self.balances = trial
        return multiple(*seen)

    @rule(target=reversals, uid=users, amount=st.integers(1, 60_000), system=st.sampled_from(FUNDING))
    def reverse(self, uid: str, amount: int, system: int) -> str:
        request = ledger_pb2.ReverseCreditRequest(reversal_id=f"reversal:{uuid.uuid4()}", user_id=uid,
                                                  amount_kopecks=amount, system=system, reference="purchase")
        taken = min(amount, self.available(uid))
        reply = self.rpc("ReverseCredit", request)
        assert (reply.taken_kopecks, reply.debt_kopecks, reply.already_existed) == (taken, amount - taken, False)
        self.balances[uid][0] -= taken
        self.balances[uid][2] += amount - taken
        self.reversed[request.reversal_id] = (request, taken, amount - taken)
        return request.reversal_id

    @rule(rid=reversals, change=st.sampled_from(["none", "amount_kopecks", "user_id", "system", "reference"]))
    def replay_reversal(self, rid: str, change: str) -> None:
        stored, taken, debt = self.reversed[rid]
        request = ledger_pb2.ReverseCreditRequest()
        request.CopyFrom(stored)
        if change == "none":
            reply = self.rpc("ReverseCredit", request)
            assert (reply.taken_kopecks, reply.debt_kopecks, reply.already_existed) == (taken, debt, True)
            return
        if change == "amount_kopecks":
            request.amount_kopecks += 1
        elif change == "user_id":
            request.user_id = str(uuid.uuid4())
        elif change == "system":
            request.system = next(s for s in FUNDING if s != stored.system)
        else:
            request.reference += "-changed"
        code, reason, metadata = self.refused("ReverseCredit", request)
        assert (code, reason, metadata.get("field")) == (
            grpc.StatusCode.ALREADY_EXISTS, "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS", change)

    # ---- invariants ----------------------------------------------------------------------------

    @invariant()
    def balances_match_the_model_and_are_never_negative(self) -> None:
        for uid, (posted, pending, debt) in self.balances.items():
            b = self.rpc("GetBalance", ledger_pb2.GetBalanceRequest(user_id=uid)).balance
            assert (b.posted_kopecks, b.pending_debits_kopecks, b.debt_kopecks) == (posted, pending, debt), uid
            assert b.debt_kopecks >= 0
            assert b.available_kopecks == b.posted_kopecks - b.pending_debits_kopecks >= 0
            assert b.pending_credits_kopecks == 0

    @invariant()
    def the_audit_passes(self) -> None:
        audit = self.rpc("AuditLedger", ledger_pb2.AuditLedgerRequest())
        assert audit.ok and audit.posted_sum_kopecks == 0, list(audit.violations)


async def test_the_ledger_behaves_like_its_model(start_service, capsys):
    clock = FrozenClock()
    # The service's own expiry job stays asleep (an hour); the model calls the expiry path itself.
    service = await start_service("ledger", clock=clock, expiry_interval_seconds=3600)
    channel = open_channel(service.address, default_timeout=30)
    db = Database(service.settings.database_url)
    loop = asyncio.get_running_loop()

    async def invoke(make: Callable[[], Awaitable[Any]]) -> Any:
        return await make()

    def call(make: Callable[[], Awaitable[Any]]) -> Any:
        return asyncio.run_coroutine_threadsafe(invoke(make), loop).result(60)

    LedgerModel.harness = Harness(call, ledger_pb2_grpc.LedgerServiceStub(channel), clock, Ledger(db, clock))
    chosen = int(os.environ.get("LEDGER_MODEL_SEED") or random.SystemRandom().randrange(2**32))
    with capsys.disabled():
        print(f"\nledger model: seed {chosen} (replay with LEDGER_MODEL_SEED={chosen})")
    machine = seed(chosen)(LedgerModel)
    try:
        await asyncio.to_thread(run_state_machine_as_test, machine, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ))
    except Exception:
        print(f"ledger model failed with seed {chosen}: replay with LEDGER_MODEL_SEED={chosen}")
        raise
    finally:
        await channel.close()
        await db.dispose()

