"""Ledger use cases: each takes one transaction, calls the rules, commits.

Concurrency: every use case that changes balances locks the user accounts it touches with
`SELECT ... FOR UPDATE` in key order (on SQLite the whole write transaction is serialised by
`BEGIN IMMEDIATE`); system accounts, which are never checked, only get their counters increased
by one UPDATE at the end of the transaction (see LedgerRepository for the one lock order).
Row locks, rather than SERIALIZABLE with retries, because contention is per account and short,
and a lock queue gives the "exactly one of 50 concurrent holds wins" answer without a retry
storm. The lock order is the same in every use case and in the expiry job (user accounts,
transfer rows, system accounts), so no two of them can deadlock.
Two creators of the same new transfer id: with the same accounts the second waits on the account
locks and then sees the first's row as a replay; with other accounts both insert and race on the
primary key, and the loser retries once and then sees the winner's row (replay or conflict).
A replay of an existing id is answered before any lock is taken and changes nothing. A batch is
first tried as all new ids, without looking them up (its insert refuses a stored id and nothing is
applied); only if that fails is it run again looking them up (see Ledger._create_batch).

Reversals and debts: a reversal locks its user's account like any use case, takes what is
available and records the shortfall as the user's debt (a column of that same row, so only the
user's row is locked; DEBTS is a system account, touched by the final UPDATE). A new posted credit
to a user repays the debt first, in the credit's transaction (`_apply_new`, and `_resolve_pending`
for a held credit when it is posted): the debt is read with the row the use case locks anyway, so
a user without debt costs nothing extra.

Single transfers are group-committed: the CreateTransfer calls that arrive while a transaction is
in flight go together through the batch path (services/common/batching.py), one transaction for
all of them, and each caller gets the answer the call alone would have given. When that batch is
not applied as a whole (one of them refused, or the transaction failed), each is applied on its
own, in the order they came (see Ledger._create_singles).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from services.common.batching import Batcher
from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import DomainError
from services.common.pagination import decode_cursor, keyset_page, page_size
from services.ledger import domain
from services.ledger.domain import (
    DEBT_SUFFIX,
    REPAY_SUFFIX,
    AccountRef,
    Balances,
    Kind,
    ReversalSpec,
    State,
    SystemAccount,
    TransferSpec,
)
from services.ledger.models import Account, Reversal, Transfer
from services.ledger.repository import (
    Counters,
    LedgerRepository,
    account_key_to_ref,
    balances_of,
    reversal_spec_of,
    spec_of,
)

log = logging.getLogger("cashback.ledger")


@dataclass(frozen=True)
class Created:
    transfer: Transfer
    already_existed: bool


@dataclass(frozen=True)
class Reversed:
    taken_kopecks: int
    debt_kopecks: int
    already_existed: bool


@dataclass
class BatchResult:
    applied: bool
    # (transfer_id, "CREATED" | "ALREADY_EXISTED" | "FAILED" | "NOT_APPLIED", reason)
    results: list[tuple[str, str, str]] = field(default_factory=list)
    created: list[dict[str, object]] = field(default_factory=list)  # the rows inserted, when applied


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    accounts_checked: int
    transfers_checked: int
    posted_sum: int
    violations: list[str]


_DEBTS = AccountRef(system=SystemAccount.DEBTS)


def _apply_new(accounts: dict[str, Counters], spec: TransferSpec, now: datetime) -> list[dict[str, object]]:
    """The rows of a new transfer: the transfer, then its repayment when it is a posted credit to
    a user who owes (repayment first; system accounts have no debt)."""
    debit, credit = accounts[spec.debit.key], accounts[spec.credit.key]
    amount = spec.amount_kopecks
    repay = 0 if spec.pending else domain.repayment(amount, credit.debt_kopecks)
    # System accounts hold deltas here (never checked); their int64 columns refuse an overflow in the database.
    if debit.is_user:
        domain.check_can_debit(debit.balances(), amount, is_user=True)
        domain.check_no_overflow(debit.debits_posted + debit.debits_pending + amount)
    if credit.is_user:
        domain.check_no_overflow(credit.credits_posted + credit.credits_pending + amount)
        domain.check_no_overflow(credit.debits_posted + credit.debits_pending + repay)
    if spec.pending:
        debit.debits_pending += amount
        credit.credits_pending += amount
    else:
        debit.debits_posted += amount
        credit.credits_posted += amount
    debit.changed = credit.changed = True
    row: dict[str, object] = {
        "id": spec.transfer_id, "debit_account_id": debit.id, "credit_account_id": credit.id,
        "amount": amount, "kind": spec.kind.value, "reference": spec.reference,
        "pending": spec.pending, "timeout_seconds": spec.timeout_seconds if spec.pending else 0,
        "state": (State.PENDING if spec.pending else State.POSTED).value,
        "timeout_at": now + timedelta(seconds=spec.timeout_seconds) if spec.pending else None,
        "created_at": now, "resolved_at": None,
    }
    if not repay:
        return [row]
    return [row, _repay(accounts, credit, spec.transfer_id, repay, spec.reference, now)]


def _posted(transfer_id: str, debit: Counters, credit: Counters, amount: int,
            kind: Kind, reference: str, now: datetime) -> dict[str, object]:
    """Moves `amount` (posted) and returns the row of one of the ledger's own transfers (its
    checks are the caller's: these are never refused)."""
    debit.debits_posted += amount
    credit.credits_posted += amount
    debit.changed = credit.changed = True
    return {
        "id": transfer_id, "debit_account_id": debit.id, "credit_account_id": credit.id, "amount": amount,
        "kind": kind.value, "reference": reference, "pending": False, "timeout_seconds": 0,
        "state": State.POSTED.value, "timeout_at": None, "created_at": now, "resolved_at": None,
    }


def _repay(accounts: dict[str, Counters], user: Counters, transfer_id: str, amount: int, reference: str,
           now: datetime) -> dict[str, object]:
    """A credit's repayment of the user's debt: `<transfer_id>:repay`, user → DEBTS."""
    debts = accounts.setdefault(_DEBTS.key, Counters(_DEBTS.key, False))
    user.debt_kopecks -= amount
    return _posted(f"{transfer_id}{REPAY_SUFFIX}", user, debts, amount, Kind.DEBT_REPAYMENT, reference, now)


def _take_back(accounts: dict[str, Counters], spec: ReversalSpec, taken: int, debt: int,
               now: datetime) -> list[dict[str, object]]:
    """A reversal's transfers: what is taken (`<id>`, user → system) and the shortfall, which the
    user now owes (`<id>:debt`, DEBTS → system)."""
    assert spec.system is not None
    user, system = accounts[spec.user.key], accounts[AccountRef(system=spec.system).key]
    rows = []
    if taken:
        rows.append(_posted(spec.reversal_id, user, system, taken, Kind.CASHBACK_REVERSAL,
                            spec.reference, now))
    if debt:
        domain.check_no_overflow(user.debt_kopecks + debt)
        user.debt_kopecks += debt
        user.changed = True
        rows.append(_posted(f"{spec.reversal_id}{DEBT_SUFFIX}", accounts[_DEBTS.key], system, debt,
                            Kind.CASHBACK_REVERSAL, spec.reference, now))
    return rows


def _resolve(accounts: dict[str, Counters], row: Transfer, to: State, now: datetime) -> None:
    debit, credit = accounts[row.debit_account_id], accounts[row.credit_account_id]
    debit.debits_pending -= row.amount
    credit.credits_pending -= row.amount
    if to is State.POSTED:
        debit.debits_posted += row.amount
        credit.credits_posted += row.amount
    debit.changed = credit.changed = True
    row.state = to.value
    row.resolved_at = now


class Ledger:
    def __init__(self, db: Database, clock: Clock, *, group_commit_size: int = 256,
                 group_commits_in_flight: int = 1) -> None:
        self._db = db
        self._clock = clock
        # Accounts known to exist (they are never deleted): no INSERT for them on the write path.
        self._known: set[str] = {AccountRef(system=s).key for s in SystemAccount}
        # The group commit of single transfers (its counters say how many batches and transfers went through).
        self.group_commit: Batcher[TransferSpec, Created] = Batcher(
            self._create_singles, name="transfers", max_size=min(group_commit_size, domain.MAX_BATCH_SIZE),
            max_in_flight=group_commits_in_flight)

    async def ensure_system_accounts(self) -> None:
        async with self._db.transaction() as session:
            await LedgerRepository(session).ensure_system_accounts(self._clock.now())

    async def _lock(self, repo: LedgerRepository, refs: list[AccountRef], now: datetime) -> dict[str, Counters]:
        """Creates the accounts not known to exist, then locks (see LedgerRepository for the order)."""
        await repo.create_accounts([r for r in refs if r.key not in self._known], now)
        return await repo.lock_accounts(refs)

    def _remember(self, accounts: dict[str, Counters]) -> None:
        """After a commit: these accounts exist."""
        if len(self._known) > 1_000_000:
            self._known = {AccountRef(system=s).key for s in SystemAccount}
        self._known.update(accounts)

    async def create_transfer(self, spec: TransferSpec) -> Created:
        """One transfer, group-committed with those created meanwhile (see the module's docstring)."""
        domain.validate(spec)
        return await self.group_commit.submit(spec)

    async def _create_singles(self, specs: list[TransferSpec]) -> list[Created | BaseException]:
        """The batch of the group commit (even of one: the batch path takes fewer round trips than
        the single path): applied as one by the batch path, each caller answered as by the single
        path (its stored row on a replay); if that batch is not applied, one by one."""
        try:
            result = await self.create_transfers(specs)
        except Exception as exc:  # noqa: BLE001 - a failure of the whole batch: each on its own below
            log.warning("group commit of %d transfers failed (%s: %s); applying them one by one",
                        len(specs), type(exc).__name__, exc)
        else:
            if result.applied:
                return await self._answers(specs, result)
        return [await self._alone(spec) for spec in specs]

    async def _answers(self, specs: list[TransferSpec], result: BatchResult) -> list[Created | BaseException]:
        created = {row["id"]: row for row in result.created}
        replayed = [tid for tid, status, _ in result.results if status == "ALREADY_EXISTED"]
        stored: dict[str, Transfer] = {}
        if replayed:
            async with self._db.sessions() as session:
                stored = await LedgerRepository(session).transfers_by_id(replayed)
        answers: list[Created | BaseException] = []
        for spec, (tid, status, _) in zip(specs, result.results, strict=True):
            if status == "CREATED":
                answers.append(Created(Transfer(**created[tid]), False))
            elif tid in stored:
                answers.append(Created(stored[tid], True))
            else:  # not seen by a read after the commit: cannot happen; answered by the single path
                answers.append(await self._alone(spec))
        return answers

    async def _alone(self, spec: TransferSpec) -> Created | BaseException:
        try:
            return await self._create_one(spec)
        except Exception as exc:  # noqa: BLE001 - its caller's answer
            return exc

    async def _create_one(self, spec: TransferSpec) -> Created:
        async with self._db.sessions() as session:  # a replay takes no lock and creates no account
            existing = await LedgerRepository(session).get_transfer(spec.transfer_id)
        if existing is not None:
            return Created(self._check_replay(existing, spec), True)
        for attempt in range(2):
            try:
                async with self._db.transaction() as session:
                    repo = LedgerRepository(session)
                    now = self._clock.now()
                    accounts = await self._lock(repo, [spec.debit, spec.credit], now)
                    # The id may have been taken since the fast path (see the module's docstring): the
                    # insert then fails on the primary key and the retry finds it; a refusal checks first.
                    existing = await repo.get_transfer(spec.transfer_id) if attempt else None
                    if existing is None:
                        try:
                            rows = _apply_new(accounts, spec, now)
                        except DomainError:
                            existing = await repo.get_transfer(spec.transfer_id)
                            if existing is None:
                                raise
                    if existing is not None:
                        return Created(self._check_replay(existing, spec), True)
                    await repo.add_transfers(rows)
                    await repo.save_accounts(accounts)
                self._remember(accounts)
                created = Transfer(**rows[0])
                log.info("transfer %s %s %d kopecks %s -> %s%s", spec.transfer_id, spec.kind,
                         spec.amount_kopecks, spec.debit.key, spec.credit.key, " (pending)" if spec.pending else "")
                return Created(created, False)
            except IntegrityError:
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _check_replay(existing: Transfer, spec: TransferSpec) -> Transfer:
        differing = domain.differing_field(spec_of(existing), spec)
        if differing is not None:
            raise domain.TransferExistsWithDifferentFields(
                f"transfer {spec.transfer_id} exists with a different {differing}", field=differing)
        return existing

    async def create_transfers(self, specs: list[TransferSpec]) -> BatchResult:
        if not 0 < len(specs) <= domain.MAX_BATCH_SIZE:
            raise domain.TransferInvalid(f"a batch holds 1 to {domain.MAX_BATCH_SIZE} transfers",
                                         reason="BATCH_SIZE_INVALID")
        look_up = False  # the first try assumes the ids are new (see _create_batch)
        for attempt in range(3):
            try:
                result = await self._create_batch(specs, look_up_existing=look_up)
            except IntegrityError:  # an id exists (first try), or a concurrent creator won the race
                if attempt == 2:
                    raise
                result = None
            if result is not None:
                return result
            look_up = True
        raise AssertionError("unreachable")

    async def _create_batch(self, specs: list[TransferSpec], *, look_up_existing: bool) -> BatchResult | None:
        """Applies a batch in one transaction, all or none. Without `look_up_existing` (the first
        try: a day's accruals are new ids) it skips the lookup of stored ids, a thousand index
        probes: the primary key of the insert is then the check, so a batch holding a stored id
        fails the insert (IntegrityError) and is rolled back; a batch that would fail a transfer is
        rolled back too, since its answer (a replay is no failure) needs the lookup. The caller
        then runs it again with the lookup (None or IntegrityError: nothing was applied)."""
        outcomes: list[tuple[str, str, str]] = []
        failed = False
        async with self._db.transaction() as session:
            repo = LedgerRepository(session)
            await repo.plan_each_statement(len(specs))
            now = self._clock.now()
            invalid: dict[int, DomainError] = {}
            for i, spec in enumerate(specs):
                try:
                    domain.validate(spec)
                except DomainError as exc:
                    invalid[i] = exc
            look_up_existing = look_up_existing or bool(invalid)
            existing = await repo.specs_by_id([s.transfer_id for s in specs]) if look_up_existing else {}
            fresh = [s for i, s in enumerate(specs) if i not in invalid and s.transfer_id not in existing]
            accounts = await self._lock(repo, [s.debit for s in fresh] + [s.credit for s in fresh], now)
            seen: dict[str, TransferSpec] = {}
            new_rows: list[dict[str, object]] = []
            for i, spec in enumerate(specs):
                try:
                    if i in invalid:
                        raise invalid[i]
                    if spec.transfer_id in existing or spec.transfer_id in seen:
                        stored = existing.get(spec.transfer_id) or seen[spec.transfer_id]
                        differing = domain.differing_field(stored, spec)
                        if differing is not None:  # a batch result has only a reason: it names the field
                            raise domain.TransferExistsWithDifferentFields(
                                f"transfer {spec.transfer_id} exists with a different {differing}",
                                reason=f"TRANSFER_EXISTS_WITH_DIFFERENT_{differing.upper()}")
                        outcomes.append((spec.transfer_id, "ALREADY_EXISTED", ""))
                        continue
                    new_rows.extend(_apply_new(accounts, spec, now))
                    seen[spec.transfer_id] = spec
                    outcomes.append((spec.transfer_id, "CREATED", ""))
                except DomainError as exc:
                    failed = True
                    outcomes.append((spec.transfer_id, "FAILED", exc.reason))
            if failed:
                await session.rollback()
                if not look_up_existing:
                    return None
                return BatchResult(False, [
                    (tid, status if status == "FAILED" else "NOT_APPLIED", reason)
                    for tid, status, reason in outcomes
                ])
            await repo.add_transfers(new_rows)
            await repo.save_accounts(accounts)
        self._remember(accounts)
        log.info("batch of %d transfers applied (%d rows new)", len(specs), len(new_rows))
        return BatchResult(True, outcomes, new_rows)

    async def reverse_credit(self, spec: ReversalSpec) -> Reversed:
        """Takes a credit back from a user (see the module docstring): what is available now, and
        the rest as debt. Idempotent by reversal id, like transfers: a replay is answered before
        any lock; two creators of one new id either queue on the user's lock (the second then
        finds the first's reversal) or race on the primary key (the loser retries once)."""
        domain.validate_reversal(spec)
        async with self._db.sessions() as session:
            existing = await LedgerRepository(session).get_reversal(spec.reversal_id)
        if existing is not None:
            return _reversal_replay(existing, spec)
        assert spec.system is not None
        for attempt in range(2):
            try:
                async with self._db.transaction() as session:
                    repo = LedgerRepository(session)
                    now = self._clock.now()
                    accounts = await self._lock(repo, [spec.user, AccountRef(system=spec.system), _DEBTS], now)
                    existing = await repo.get_reversal(spec.reversal_id)
                    if existing is not None:
                        return _reversal_replay(existing, spec)
                    clash = await repo.get_transfer(spec.reversal_id)
                    if clash is not None:  # a caller's transfer (of another kind) has this id
                        raise domain.TransferExistsWithDifferentFields(
                            f"transfer {spec.reversal_id} exists and is a {clash.kind}, not a reversal", field="kind")
                    user = accounts[spec.user.key]
                    taken, debt = domain.split_reversal(spec.amount_kopecks, user.balances().available)
                    rows = _take_back(accounts, spec, taken, debt, now)
                    await repo.add_reversal(spec, taken, debt, now)
                    await repo.add_transfers(rows)
                    await repo.save_accounts(accounts)
                self._remember(accounts)
                log.info("reversal %s of %d kopecks for %s: %d taken, %d became debt", spec.reversal_id,
                         spec.amount_kopecks, spec.user.key, taken, debt)
                return Reversed(taken, debt, False)
            except IntegrityError:
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def post_pending(self, transfer_id: str) -> Transfer:
        return await self._resolve_pending(transfer_id, State.POSTED)

    async def void_pending(self, transfer_id: str) -> Transfer:
        return await self._resolve_pending(transfer_id, State.VOIDED)

    async def _resolve_pending(self, transfer_id: str, to: State) -> Transfer:
        """Posts or voids a hold. Like TigerBeetle, a hold past its timeout can no longer be posted,
        even when the expiry job has not reached it yet: it expires here and then. Voiding an expired
        hold answers it as it is (the hold is released either way), as the API promises."""
        async with self._db.transaction() as session:
            repo = LedgerRepository(session)
            now = self._clock.now()
            row = await repo.get_transfer(transfer_id)
            if row is None:
                raise domain.TransferNotFound(f"no transfer {transfer_id}")
            accounts = await repo.lock_accounts([_ref(row.debit_account_id), _ref(row.credit_account_id)])
            row = await repo.get_transfer(transfer_id, lock=True)
            assert row is not None
            if row.state == State.PENDING.value and domain.is_past_timeout(row.timeout_at, now):
                _resolve(accounts, row, State.EXPIRED, now)
                await repo.save_accounts(accounts)
                log.info("pending transfer %s expired", transfer_id)
            elif row.state == State.PENDING.value:
                _resolve(accounts, row, to, now)
                credit = accounts[row.credit_account_id]
                if to is State.POSTED and credit.debt_kopecks:  # a posted credit repays first
                    repay = domain.repayment(row.amount, credit.debt_kopecks)
                    await repo.add_transfers([_repay(accounts, credit, row.id, repay, row.reference, now)])
                await repo.save_accounts(accounts)
                log.info("pending transfer %s %s", transfer_id, to.value.lower())
                return row
        if row.state == to.value or (to is State.VOIDED and row.state == State.EXPIRED.value):
            return row  # idempotent replay, or a void of a hold that is already released
        raise _cannot_resolve(row, to)

    async def expire_due(self, limit: int = 500) -> int:
        """Releases holds past their timeout. Safe with replicas: accounts are locked first (as in
        every use case), then the due holds are re-read under lock, so a hold resolved meanwhile
        (by a post, a void or another replica) is skipped."""
        async with self._db.transaction() as session:
            repo = LedgerRepository(session)
            now = self._clock.now()
            candidates = await repo.due_pending(now, limit)
            if not candidates:
                return 0
            refs = {_ref(key) for _, debit, credit in candidates for key in (debit, credit)}
            accounts = await repo.lock_accounts(list(refs))
            due = await repo.still_due([tid for tid, _, _ in candidates], now)
            for row in due:
                _resolve(accounts, row, State.EXPIRED, now)
            await repo.save_accounts(accounts)
        if due:
            log.info("expired %d pending transfers", len(due))
        return len(due)

    async def get_transfer(self, transfer_id: str) -> Transfer:
        return await self._get(transfer_id)

    async def _get(self, transfer_id: str) -> Transfer:
        async with self._db.sessions() as session:
            row = await LedgerRepository(session).get_transfer(transfer_id)
        if row is None:
            raise domain.TransferNotFound(f"no transfer {transfer_id}")
        return row

    async def balance(self, user_id: str) -> Balances:
        _require_user(user_id)
        async with self._db.sessions() as session:
            return balances_of(await LedgerRepository(session).account(AccountRef(user_id=user_id).key))

    async def statement(self, user_id: str, size: int, token: str) -> tuple[list[Transfer], str]:
        _require_user(user_id)
        limit = page_size(size)
        before = decode_cursor(token)
        async with self._db.sessions() as session:
            rows = await LedgerRepository(session).statement(AccountRef(user_id=user_id).key, limit + 1, before)
        return keyset_page(rows, limit)

    async def audit(self) -> AuditReport:
        """Checks, over one consistent snapshot: every account's four counters equal the sums of its
        transfers by state; the posted balances sum to zero (so do the pending ones); no user
        account is overdrawn; every transfer is well formed (positive amount, two different
        accounts, a known state that fits its pending flag, a timeout when pending) and has one of
        the allowed shapes (points reach users only from funding accounts and leave only to
        redemption accounts, back to funding accounts or to DEBTS); debts are never negative and
        sum to what DEBTS is owed; every reversal's transfers are what it answered (taken + debt =
        amount)."""
        async with self._db.transaction() as session:
            repo = LedgerRepository(session)
            await repo.use_snapshot()  # REPEATABLE READ on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises
            accounts = await repo.all_accounts()
            transfers, sums = await repo.sums_by_account()
            malformed = await repo.malformed_transfers()
            shapes = await repo.transfer_shapes()
            bad_reversals = await repo.inconsistent_reversals()
        violations = _debt_violations(accounts)
        posted_sum = pending_sum = 0
        for account in accounts:
            balances = balances_of(account)
            posted_sum += balances.posted
            pending_sum += account.credits_pending - account.debits_pending
            expected = sums.pop(account.id, {})
            for counter in ("debits_posted", "credits_posted", "debits_pending", "credits_pending"):
                stored, computed = getattr(account, counter), expected.get(counter, 0)
                if stored != computed:
                    violations.append(f"{account.id}: {counter} is {stored}, transfers say {computed}")
            if account.user_id is not None and balances.available < 0:
                violations.append(f"{account.id}: overdrawn (available {balances.available})")
        violations.extend(f"{key}: transfers name an account that does not exist" for key in sums)
        if posted_sum != 0:
            violations.append(f"posted balances sum to {posted_sum}, not zero")
        if pending_sum != 0:
            violations.append(f"pending balances sum to {pending_sum}, not zero")
        violations.extend(f"transfer {tid} is malformed" for tid in malformed)
        violations.extend(f"reversal {rid} does not match its transfers" for rid in bad_reversals)
        violations.extend(f"{n} {kind} transfers go from {debit} to {credit}, which is not allowed"
                          for kind, debit, credit, n in shapes if not domain.is_allowed_flow(kind, debit, credit))
        return AuditReport(not violations, len(accounts), transfers, posted_sum, violations)


def _reversal_replay(existing: Reversal, spec: ReversalSpec) -> Reversed:
    differing = domain.differing_reversal_field(reversal_spec_of(existing), spec)
    if differing is not None:
        raise domain.TransferExistsWithDifferentFields(
            f"reversal {spec.reversal_id} exists with a different {differing}", field=differing)
    return Reversed(existing.taken, existing.debt, True)


def _debt_violations(accounts: list[Account]) -> list[str]:
    """Debts: none negative, none on a system account, and together what DEBTS is owed."""
    violations = [f"{a.id}: debt is {a.debt_kopecks}" for a in accounts
                  if a.debt_kopecks < 0 or (a.user_id is None and a.debt_kopecks != 0)]
    owed = sum(a.debits_posted - a.credits_posted for a in accounts if a.id == _DEBTS.key)
    debts = sum(a.debt_kopecks for a in accounts if a.user_id is not None)
    if debts != owed:
        violations.append(f"users owe {debts} kopecks, but {_DEBTS.key} is owed {owed}")
    return violations


def _ref(key: str) -> AccountRef:
    return account_key_to_ref(key)


def _require_user(user_id: str) -> None:
    if not user_id:
        raise domain.TransferInvalid("user_id is required", reason="USER_ID_REQUIRED")


def _cannot_resolve(row: Transfer, to: State) -> DomainError:
    if row.state == State.POSTED.value:
        return domain.TransferAlreadyPosted(f"transfer {row.id} is already posted")
    if row.state == State.VOIDED.value:
        return domain.TransferAlreadyVoided(f"transfer {row.id} is already voided")
    if row.state == State.EXPIRED.value:
        return domain.TransferExpired(f"pending transfer {row.id} expired")
    return domain.TransferNotPending(f"transfer {row.id} is not pending")
