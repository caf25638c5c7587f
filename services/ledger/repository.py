"""Persistence of accounts and transfers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import asyncpg
from sqlalchemy import and_, any_, bindparam, case, func, insert, literal, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.domain import DEBT_SUFFIX, AccountRef, Balances, Kind, ReversalSpec, SystemAccount, TransferSpec
from services.ledger.models import Account, Reversal, Transfer


def account_key_to_ref(key: str) -> AccountRef:
    kind, _, name = key.partition(":")
    return AccountRef(user_id=name) if kind == "user" else AccountRef(system=SystemAccount(name))


def spec_of(row: Transfer) -> TransferSpec:
    return TransferSpec(
        transfer_id=row.id, debit=account_key_to_ref(row.debit_account_id),
        credit=account_key_to_ref(row.credit_account_id), amount_kopecks=row.amount, kind=Kind(row.kind),
        reference=row.reference, pending=row.pending, timeout_seconds=row.timeout_seconds,
    )


def balances_of(account: Account | None) -> Balances:
    if account is None:
        return Balances()
    return Balances(account.debits_posted, account.credits_posted, account.debits_pending,
                    account.credits_pending, account.debt_kopecks)


def reversal_spec_of(row: Reversal) -> ReversalSpec:
    return ReversalSpec(reversal_id=row.id, user_id=row.user_id, system=SystemAccount(row.system),
                        amount_kopecks=row.amount, reference=row.reference)


@dataclass
class Counters:
    """An account's four counters (and a user's debt) inside a use case. A user account's are the
    locked row's values (checked, then written back); a system account's are only this
    transaction's deltas, added to the row at the end (system accounts are never checked, so never
    read under lock; they have no debt)."""

    id: str
    is_user: bool
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    debt_kopecks: int = 0
    changed: bool = False

    def balances(self) -> Balances:
        return Balances(self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending,
                        self.debt_kopecks)


_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
_USER_COLUMNS = (*_COUNTERS, "debt_kopecks")  # what a user account's lock reads and its save writes
_accounts = Account.__table__
_transfers = Transfer.__table__
_SET_USER_COUNTERS = (
    update(_accounts).where(_accounts.c.id == bindparam("key"))
    .values({c: bindparam(c) for c in _USER_COLUMNS})
)
_ADD_TO_SYSTEM_COUNTERS = (
    update(_accounts).where(_accounts.c.id == bindparam("key"))
    .values({c: _accounts.c[c] + bindparam(c) for c in _COUNTERS})
)
# PostgreSQL: a whole batch in one statement each, the rows passed as one array per column
# (one round trip and one plan, where an executemany sends a statement per row).
_PG_SET_USER_COUNTERS = text(
    "UPDATE accounts SET debits_posted = d.debits_posted, credits_posted = d.credits_posted, "
    "debits_pending = d.debits_pending, credits_pending = d.credits_pending, debt_kopecks = d.debt_kopecks "
    "FROM unnest(CAST(:ids AS varchar[]), CAST(:debits_posted AS bigint[]), CAST(:credits_posted AS bigint[]), "
    "CAST(:debits_pending AS bigint[]), CAST(:credits_pending AS bigint[]), CAST(:debt_kopecks AS bigint[])) "
    "AS d(id, debits_posted, credits_posted, debits_pending, credits_pending, debt_kopecks) "
    "WHERE accounts.id = d.id"
)
_TRANSFER_COLUMNS = ("id", "debit_account_id", "credit_account_id", "amount", "kind", "reference", "pending",
                     "timeout_seconds", "state", "timeout_at", "created_at", "resolved_at")
_row_values = itemgetter(*_TRANSFER_COLUMNS)
_CUSTOM_PLAN_MIN_ROWS = 100  # below, the generic plan of a few rows is as good (see plan_each_statement)
_COPY_MIN_ROWS = 50  # below, COPY's extra round trip (it first reads the column types) does not pay
_PG_INSERT_TRANSFERS = text(
    f"INSERT INTO transfers ({', '.join(_TRANSFER_COLUMNS)}) "
    "SELECT * "
    "FROM unnest(CAST(:id AS varchar[]), CAST(:debit_account_id AS varchar[]), "
    "CAST(:credit_account_id AS varchar[]), CAST(:amount AS bigint[]), CAST(:kind AS varchar[]), "
    "CAST(:reference AS varchar[]), CAST(:pending AS boolean[]), CAST(:timeout_seconds AS bigint[]), "
    "CAST(:state AS varchar[]), CAST(:timeout_at AS timestamptz[]), CAST(:created_at AS timestamptz[]), "
    "CAST(:resolved_at AS timestamptz[]))"
)


class LedgerRepository:
    """Lock order, the same in every use case (so no two transactions wait on each other in a
    cycle): user accounts in key order (SELECT ... FOR UPDATE), then transfer rows (and a
    reversal's row, inserted with its transfers), then system accounts in key order (touched
    only by the final UPDATE, so their hot rows stay locked for the shortest time: from that
    statement to the commit)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return self.session.bind.dialect.name

    async def plan_each_statement(self, rows: int) -> None:
        """PostgreSQL, a transaction of `rows` transfers: plan every statement for its own
        parameters. The array statements serve single transfers and batches of thousands alike;
        once single transfers have made the server cache a generic plan (sized for a few rows), a
        big batch would run it too, several times slower. Planning them afresh costs well under a
        millisecond; the statement that asks for it is one more round trip, which a few rows (the
        group commit of single transfers) do without: the generic plan suits them."""
        if self._dialect == "postgresql" and rows >= _CUSTOM_PLAN_MIN_ROWS:
            await self.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))

    async def create_accounts(self, refs: Iterable[AccountRef], now: datetime) -> None:
        """Creates the accounts that do not exist yet (in key order; a no-op for the others)."""
        by_key = {ref.key: ref for ref in refs}
        if not by_key:
            return
        stmt = (pg_insert if self._dialect == "postgresql" else sqlite_insert)(_accounts).on_conflict_do_nothing()
        await self.session.execute(stmt, [
            {"id": key, "user_id": by_key[key].user_id, "debits_posted": 0, "credits_posted": 0,
             "debits_pending": 0, "credits_pending": 0, "debt_kopecks": 0, "created_at": now}
            for key in sorted(by_key)
        ])

    async def lock_accounts(self, refs: Iterable[AccountRef]) -> dict[str, Counters]:
        """Locks the user accounts in key order and reads them; system accounts get delta counters.
        Every account must exist (see create_accounts)."""
        keys = {ref.key: ref.is_user for ref in refs}
        users = sorted(k for k, is_user in keys.items() if is_user)
        found: dict[str, Counters] = {}
        if users:
            rows = await self.session.execute(
                select(_accounts.c.id, *(_accounts.c[c] for c in _USER_COLUMNS))
                .where(self._among(_accounts.c.id, users)).order_by(_accounts.c.id).with_for_update())
            found = {row[0]: Counters(row[0], True, *row[1:]) for row in rows}
            if len(found) != len(users):
                raise LookupError(f"accounts missing: {sorted(set(users) - set(found))[:5]}")
        for key, is_user in keys.items():
            if not is_user:
                found[key] = Counters(key, False)
        return found

    async def save_accounts(self, accounts: dict[str, Counters]) -> None:
        """Writes back the changed user accounts, then adds the deltas to the system accounts."""
        users = [a for a in accounts.values() if a.is_user and a.changed]
        systems = sorted((a for a in accounts.values() if not a.is_user and a.changed), key=lambda a: a.id)
        if users and self._dialect == "postgresql":
            await self.session.execute(_PG_SET_USER_COUNTERS, {
                "ids": [a.id for a in users], **{c: [getattr(a, c) for a in users] for c in _USER_COLUMNS}})
        elif users:
            await self.session.execute(_SET_USER_COUNTERS, [
                {"key": a.id, **{c: getattr(a, c) for c in _USER_COLUMNS}} for a in users])
        for a in systems:  # one by one, in key order
            result = await self.session.execute(
                _ADD_TO_SYSTEM_COUNTERS, {"key": a.id, **{c: getattr(a, c) for c in _COUNTERS}})
            if result.rowcount != 1:  # no foreign key backs the transfers (see models.Transfer): fail loudly
                raise LookupError(f"system account {a.id} does not exist")

    async def ensure_system_accounts(self, now: datetime) -> None:
        await self.create_accounts([AccountRef(system=s) for s in SystemAccount], now)

    def _among(self, column: Any, values: list[str]) -> Any:
        """`column IN (values)`; on PostgreSQL `= ANY(array)`: one parameter, however many values."""
        if self._dialect == "postgresql":
            return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
        return column.in_(values)

    async def transfers_by_id(self, ids: Iterable[str], *, lock: bool = False) -> dict[str, Transfer]:
        stmt = select(Transfer).where(self._among(Transfer.id, list(ids)))
        if lock:  # refresh objects this session read before taking the lock
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return {row.id: row for row in (await self.session.scalars(stmt)).all()}

    async def specs_by_id(self, ids: list[str]) -> dict[str, TransferSpec]:
        """The stored transfers among `ids`, as specs (what a replay is compared with): only the
        columns a spec needs, no ORM objects (a batch usually finds none)."""
        t = _transfers.c
        rows = await self.session.execute(
            select(t.id, t.debit_account_id, t.credit_account_id, t.amount, t.kind, t.reference, t.pending,
                   t.timeout_seconds).where(self._among(t.id, ids)))
        return {row[0]: TransferSpec(row[0], account_key_to_ref(row[1]), account_key_to_ref(row[2]), row[3],
                                     Kind(row[4]), row[5], row[6], row[7]) for row in rows}

    async def get_transfer(self, transfer_id: str, *, lock: bool = False) -> Transfer | None:
        return (await self.transfers_by_id([transfer_id], lock=lock)).get(transfer_id)

    async def add_transfers(self, rows: list[dict[str, object]]) -> None:
        if len(rows) >= _COPY_MIN_ROWS and self._dialect == "postgresql" and await self._copy_transfers(rows):
            return
        if rows and self._dialect == "postgresql":
            await self.session.execute(_PG_INSERT_TRANSFERS, {c: [row[c] for row in rows] for c in _TRANSFER_COLUMNS})
        elif rows:
            await self.session.execute(insert(_transfers), rows)

    async def _copy_transfers(self, rows: list[dict[str, object]]) -> bool:
        """PostgreSQL, a batch: COPY (binary) on this transaction's asyncpg connection, about a
        third cheaper than the INSERT of unnested arrays for a thousand rows. False (nothing done)
        if the transaction has not begun on the driver's side yet. A duplicate id is raised as
        SQLAlchemy's IntegrityError, like the INSERT's, for the use case's retry."""
        raw = (await (await self.session.connection()).get_raw_connection()).driver_connection
        if raw is None or not raw.is_in_transaction():
            return False
        try:
            await raw.copy_records_to_table("transfers", columns=_TRANSFER_COLUMNS, records=map(_row_values, rows))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError("COPY transfers", None, exc) from exc
        return True

    async def account(self, key: str) -> Account | None:
        return await self.session.get(Account, key)

    async def get_reversal(self, reversal_id: str) -> Reversal | None:
        return await self.session.get(Reversal, reversal_id, populate_existing=True)

    async def add_reversal(self, spec: ReversalSpec, taken: int, debt: int, now: datetime) -> Reversal:
        """Inserted with the reversal's transfers; a concurrent creator of the same id fails here on
        the primary key (IntegrityError) and retries (see Ledger.reverse_credit)."""
        assert spec.system is not None
        row = Reversal(id=spec.reversal_id, user_id=spec.user_id, system=spec.system.value,
                       amount=spec.amount_kopecks, reference=spec.reference, taken=taken, debt=debt, created_at=now)
        self.session.add(row)
        await self.session.flush()
        return row

    async def due_pending(self, now: datetime, limit: int) -> list[tuple[str, str, str]]:
        """(id, debit account, credit account) of holds past their timeout, without locking them."""
        rows = await self.session.execute(
            select(Transfer.id, Transfer.debit_account_id, Transfer.credit_account_id)
            # The state as a literal, not a parameter: a generic plan could then not use the partial
            # index ix_transfers_pending_timeout (only pending holds, in timeout order).
            .where(text("transfers.state = 'PENDING'"), Transfer.timeout_at <= now)
            .order_by(Transfer.timeout_at)
            .limit(limit)
        )
        return [(tid, debit, credit) for tid, debit, credit in rows]

    async def still_due(self, ids: list[str], now: datetime) -> list[Transfer]:
        """Those of `ids` still pending and past their timeout, locked (after their accounts)."""
        return list((await self.session.scalars(
            select(Transfer)
            .where(Transfer.id.in_(ids), Transfer.state == "PENDING", Transfer.timeout_at <= now)
            .order_by(Transfer.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )).all())

    async def use_snapshot(self) -> None:
        """Makes the current transaction read one snapshot (PostgreSQL: REPEATABLE READ). Must come
        before the first statement of the transaction. SQLite's write transactions are serialised."""
        if self.session.bind.dialect.name == "postgresql":
            await self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

    async def statement(self, account_key: str, limit: int,
                        before: tuple[datetime, str] | None) -> list[Transfer]:
        stmt = select(Transfer).where(
            or_(Transfer.debit_account_id == account_key, Transfer.credit_account_id == account_key)
        )
        if before is not None:
            stmt = stmt.where(tuple_(Transfer.created_at, Transfer.id) < tuple_(*before))
        stmt = stmt.order_by(Transfer.created_at.desc(), Transfer.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def all_accounts(self) -> list[Account]:
        return list((await self.session.scalars(select(Account))).all())

    async def malformed_transfers(self, limit: int = 100) -> list[str]:
        """Ids of transfers that no use case could have written."""
        return list((await self.session.scalars(
            select(Transfer.id).where(or_(
                Transfer.amount <= 0,
                Transfer.debit_account_id == Transfer.credit_account_id,
                Transfer.state.not_in(["POSTED", "PENDING", "VOIDED", "EXPIRED"]),
                and_(Transfer.pending.is_(False), Transfer.state != "POSTED"),
                and_(Transfer.pending.is_(True), Transfer.timeout_at.is_(None)),
            )).order_by(Transfer.id).limit(limit)
        )).all())

    async def inconsistent_reversals(self, limit: int = 100) -> list[str]:
        """Ids of reversals whose figures do not add up (taken + debt = amount, neither negative)
        or whose transfers (`<id>` of `taken`, `<id>:debt` of `debt`) are not what they say."""
        r = Reversal.__table__.alias("r")
        taken, debt = _transfers.alias("taken"), _transfers.alias("debt")
        return list((await self.session.scalars(
            select(r.c.id)
            .outerjoin(taken, taken.c.id == r.c.id)
            .outerjoin(debt, debt.c.id == r.c.id + DEBT_SUFFIX)
            .where(or_(r.c.taken < 0, r.c.debt < 0, r.c.taken + r.c.debt != r.c.amount,
                       func.coalesce(taken.c.amount, 0) != r.c.taken, func.coalesce(debt.c.amount, 0) != r.c.debt))
            .order_by(r.c.id).limit(limit)
        )).all())

    async def transfer_shapes(self) -> list[tuple[str, str, str, int]]:
        """(kind, debit, credit, count) with every user account folded into "user:"."""
        def shape(column: Any) -> Any:
            return case((column.like("user:%"), literal("user:")), else_=column)

        debit, credit = shape(Transfer.debit_account_id), shape(Transfer.credit_account_id)
        rows = await self.session.execute(
            select(Transfer.kind, debit, credit, func.count()).group_by(Transfer.kind, debit, credit))
        return [(kind, d, c, int(n)) for kind, d, c, n in rows]

    async def sums_by_account(self) -> tuple[int, dict[str, dict[str, int]]]:
        """Per account, what its counters must be according to the transfers."""
        sums: dict[str, dict[str, int]] = {}
        count = 0
        for side, column in (("debits", Transfer.debit_account_id), ("credits", Transfer.credit_account_id)):
            rows = await self.session.execute(
                select(column, Transfer.state, func.sum(Transfer.amount), func.count())
                .group_by(column, Transfer.state)
            )
            for account_id, state, total, n in rows:
                if side == "debits":
                    count += n
                bucket = sums.setdefault(account_id, {})
                if state == "POSTED":
                    bucket[f"{side}_posted"] = bucket.get(f"{side}_posted", 0) + int(total)
                elif state == "PENDING":
                    bucket[f"{side}_pending"] = bucket.get(f"{side}_pending", 0) + int(total)
        return count, sums
