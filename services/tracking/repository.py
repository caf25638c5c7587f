"""Persistence of the catalogue, clicks, purchases, postbacks and claims. Background jobs claim
rows with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serialises writers anyway)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.tracking import search
from services.tracking.domain import PurchaseStatus, RuleSet
from services.tracking.models import (
    ActivationReward,
    Category,
    Claim,
    Click,
    Partner,
    PartnerRuleSet,
    Postback,
    Purchase,
    PurchaseReport,
)

PENDING_STATUSES = (PurchaseStatus.PENDING.value, PurchaseStatus.CONFIRMED.value)


_CLICKS_AND_PARTNERS = (
    select(Click.id, Click.user_id, Partner.slug, Partner.rules_json, Partner.rule_version)
    .outerjoin(Partner, Partner.slug == Click.partner_id)
    .where(Click.id.in_(bindparam("click_ids", expanding=True)))
)
_PARTNERS_RULES = select(Partner.slug, Partner.rules_json, Partner.rule_version).where(
    Partner.slug.in_(bindparam("slugs", expanding=True)))
_INSERT_POSTBACK = insert(Postback.__table__)
_INSERT_REPORT = insert(PurchaseReport.__table__)
_PURCHASE_KEY = ["partner_id", "order_id", "part_id"]
_INSERT_PURCHASE_IF_NEW = {
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(Purchase.__table__)
    .on_conflict_do_nothing(index_elements=_PURCHASE_KEY)
    .returning(Purchase.__table__.c.id)
    for dialect in (postgresql, sqlite)
}
_CLAIM_SOURCE = "claim"
_LIVE_CLAIM = ("OPEN", "APPROVED")


class TrackingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- catalogue ---------------------------------------------------------------------------

    async def categories(self) -> list[tuple[Category, int]]:
        counts = dict((await self.session.execute(
            select(Partner.category_id, func.count()).group_by(Partner.category_id))).all())
        rows = (await self.session.scalars(select(Category).order_by(Category.position, Category.slug))).all()
        return [(row, int(counts.get(row.slug, 0))) for row in rows]

    async def all_categories(self) -> dict[str, Category]:
        return {row.slug: row for row in (await self.session.scalars(select(Category))).all()}

    async def all_partners(self) -> dict[str, Partner]:
        return {row.slug: row for row in (await self.session.scalars(select(Partner))).all()}

    async def partners(self, category: str, query: str, offset: int, limit: int) -> tuple[list[Partner], int]:
        """A page of the catalogue: by name without a query; with one, the partners it matches,
        best match first (services/tracking/search.py ranks the ~800 search keys in memory)."""
        conditions = [Partner.category_id == category] if category else []
        if not query:
            total = await self.session.scalar(select(func.count()).select_from(Partner).where(*conditions))
            rows = (await self.session.scalars(
                select(Partner).where(*conditions).order_by(Partner.name, Partner.slug).offset(offset).limit(limit)
            )).all()
            return list(rows), int(total or 0)
        candidates = (await self.session.execute(
            select(Partner.slug, Partner.name, Partner.search_text).where(*conditions))).all()
        ranked = search.rank(query, (search.Candidate(*row) for row in candidates))
        page = ranked[offset:offset + limit]
        found = {row.slug: row for row in (await self.session.scalars(
            select(Partner).where(Partner.slug.in_(page)))).all()} if page else {}
        return [found[slug] for slug in page if slug in found], len(ranked)

    async def partner(self, slug: str) -> Partner | None:
        return await self.session.get(Partner, slug)

    async def partner_by_service(self, code: str) -> Partner | None:
        return await self.session.scalar(select(Partner).where(Partner.service_code == code))

    async def rule_set(self, partner_id: str, version: int) -> RuleSet | None:
        row = await self.session.get(PartnerRuleSet, (partner_id, version))
        return RuleSet.from_json(row.rules_json, row.version) if row is not None else None

    # --- clicks ------------------------------------------------------------------------------

    async def click(self, click_id: str) -> Click | None:
        return await self.session.get(Click, click_id) if click_id else None

    async def attributions(self, wanted: list[tuple[str, str]]) -> list[tuple[Row[Any] | None, Row[Any] | None]]:
        """For new purchases, per (click_id, partner_hint) pair in order: the click (id, user_id) and
        the partner (slug, rules_json, rule_version) of the click, else of the hint. Two round trips
        at most (Core rows, not ORM objects: this is the ingestion hot path): the clicks with their
        partners, then the hinted partners of those without a known click."""
        conn = await self.session.connection()
        click_ids = sorted({click_id for click_id, _ in wanted if click_id})
        clicks: dict[str, Row[Any]] = {}
        if click_ids:
            clicks = {row.id: row for row in await conn.execute(
                _CLICKS_AND_PARTNERS, {"click_ids": click_ids})}
        hints = sorted({hint for click_id, hint in wanted if hint and click_id not in clicks})
        partners: dict[str, Row[Any]] = {}
        if hints:
            partners = {row.slug: row for row in await conn.execute(_PARTNERS_RULES, {"slugs": hints})}
        found: list[tuple[Row[Any] | None, Row[Any] | None]] = []
        for click_id, hint in wanted:
            click = clicks.get(click_id)
            if click is not None:
                found.append((click, click if click.slug is not None else None))
            else:
                found.append((None, partners.get(hint)))
        return found

    async def insert_purchases_if_new(self, rows: list[dict[str, Any]]) -> set[str]:
        """INSERT ... ON CONFLICT (partner_id, order_id, part_id) DO NOTHING of purchases, in one
        statement (SQLAlchemy's insertmanyvalues): the ids of the rows that went in. On PostgreSQL
        a concurrent inserter of the same order is waited for; then the row exists and is skipped.
        Rows go in (partner, order, part) order, so two such inserts wait on each other's orders
        in one order and never deadlock."""
        if not rows:
            return set()
        conn = await self.session.connection()
        stmt = _INSERT_PURCHASE_IF_NEW[conn.dialect.name]
        ordered = sorted(rows, key=lambda r: (r["partner_id"], r["order_id"], r["part_id"]))
        return set((await conn.execute(stmt, ordered)).scalars())

    async def insert_reports(self, rows: list[dict[str, Any]]) -> None:
        """`purchase_reports` rows (fingerprint, purchase_id, postback_id, status, amount_kopecks,
        event_time, received_at, effect)."""
        if rows:
            await (await self.session.connection()).execute(_INSERT_REPORT, rows)

    async def report_stored(self, fingerprint: str) -> bool:
        return await self.session.scalar(
            select(PurchaseReport.fingerprint).where(PurchaseReport.fingerprint == fingerprint)) is not None

    async def reports(self, purchase_id: str) -> list[PurchaseReport]:
        """A purchase's reports in the shop's order of events (arrival for those without a time)."""
        return list((await self.session.scalars(
            select(PurchaseReport).where(PurchaseReport.purchase_id == purchase_id)
            .order_by(func.coalesce(PurchaseReport.event_time, PurchaseReport.received_at),
                      PurchaseReport.received_at, PurchaseReport.fingerprint))).all())

    async def orders_with_claims(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of these (partner, order) pairs, those with a live claim or a purchase made by one: their
        reports take the path that joins them to the claim (Ingestion._apply_known)."""
        wanted = sorted({k for k in keys if k[0]})
        if not wanted:
            return set()
        made = select(Purchase.partner_id, Purchase.order_id).where(
            Purchase.source == _CLAIM_SOURCE, tuple_(Purchase.partner_id, Purchase.order_id).in_(wanted))
        claimed = select(Claim.partner_id, Claim.order_id).where(
            Claim.status == "OPEN", tuple_(Claim.partner_id, Claim.order_id).in_(wanted))
        rows = await (await self.session.connection()).execute(made.union_all(claimed))
        return {(row[0], row[1]) for row in rows}

    async def insert_postbacks(self, rows: list[dict[str, Any]]) -> None:
        """Audit rows (the columns' values, as `services.tracking.audit.audit_record` makes them)."""
        if rows:
            await (await self.session.connection()).execute(_INSERT_POSTBACK, rows)

    # --- purchases ---------------------------------------------------------------------------

    async def purchase_by_order(self, partner_id: str, order_id: str, part_id: str, *, lock: bool = False
                                ) -> Purchase | None:
        stmt = select(Purchase).where(Purchase.partner_id == partner_id, Purchase.order_id == order_id,
                                      Purchase.part_id == part_id)
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def purchases_of_order(self, partner_id: str, order_id: str, *, lock: bool = False) -> list[Purchase]:
        """Every purchase (part) of a shop's order; the one a claim made comes first."""
        stmt = select(Purchase).where(Purchase.partner_id == partner_id, Purchase.order_id == order_id).order_by(
            (Purchase.source == _CLAIM_SOURCE).desc(), Purchase.created_at, Purchase.id)
        if lock:
            stmt = stmt.with_for_update()
        return list((await self.session.scalars(stmt)).all())

    async def add_activation_reward(self, user_id: str, partner_id: str, month: str, purchase_id: str) -> bool:
        """Whether this is the first reward of the user for the service in the month (else nothing is added)."""
        conn = await self.session.connection()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        result = await conn.execute(dialect.insert(ActivationReward.__table__).values(
            user_id=user_id, partner_id=partner_id, month=month, purchase_id=purchase_id).on_conflict_do_nothing())
        return bool(result.rowcount)

    async def purchase(self, purchase_id: str, *, lock: bool = False) -> Purchase | None:
        stmt = select(Purchase).where(Purchase.id == purchase_id)
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def purchases(self, user_id: str, status: str | None, limit: int,
                        before: tuple[datetime, str] | None) -> list[Purchase]:
        stmt = select(Purchase).where(Purchase.user_id == user_id)
        if status:
            stmt = stmt.where(Purchase.status == status)
        if before is not None:
            stmt = stmt.where(tuple_(Purchase.created_at, Purchase.id) < tuple_(*before))
        stmt = stmt.order_by(Purchase.created_at.desc(), Purchase.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def pending_cashback(self, user_id: str) -> int:
        total = await self.session.scalar(
            select(func.coalesce(func.sum(Purchase.cashback_kopecks), 0))
            .where(Purchase.user_id == user_id, Purchase.status.in_(PENDING_STATUSES)))
        return int(total or 0)

    async def due_accruals(self, confirmed_before: datetime, limit: int) -> list[Purchase]:
        return list((await self.session.scalars(
            select(Purchase)
            .where(Purchase.status == PurchaseStatus.CONFIRMED.value, Purchase.user_id.is_not(None),
                   Purchase.confirm_time <= confirmed_before)
            .order_by(Purchase.confirm_time)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )).all())

    async def due_expiry(self, created_before: datetime, limit: int) -> list[Purchase]:
        return list((await self.session.scalars(
            select(Purchase)
            .where(Purchase.status == PurchaseStatus.PENDING.value, Purchase.created_at <= created_before)
            .order_by(Purchase.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )).all())

    async def has_credited_purchase(self, user_id: str, other_than: str) -> bool:
        """Whether the user already had a partner purchase credited (for the first-purchase referral bonus)."""
        found = await self.session.scalar(
            select(Purchase.id).where(
                Purchase.user_id == user_id, Purchase.id != other_than,
                Purchase.status == PurchaseStatus.ACCRUED.value, Purchase.cashback_kopecks > 0,
                Purchase.source != "activation",
            ).limit(1))
        return found is not None


    # --- claims ------------------------------------------------------------------------------

    async def claim(self, claim_id: str, *, lock: bool = False) -> Claim | None:
        stmt = select(Claim).where(Claim.id == claim_id)
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def claim_for_order(self, user_id: str, partner_id: str, order_id: str) -> Claim | None:
        return await self.session.scalar(select(Claim).where(
            Claim.user_id == user_id, Claim.partner_id == partner_id, Claim.order_id == order_id))

    async def live_claim_for_order(self, partner_id: str, order_id: str, *, lock: bool = False) -> Claim | None:
        """The open or approved claim of anyone for a shop's order (at most one: a unique index)."""
        stmt = select(Claim).where(Claim.partner_id == partner_id, Claim.order_id == order_id,
                                   Claim.status.in_(_LIVE_CLAIM))
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def claims(self, user_id: str, status: str | None, limit: int,
                     before: tuple[datetime, str] | None) -> list[Claim]:
        stmt = select(Claim)
        if user_id:
            stmt = stmt.where(Claim.user_id == user_id)
        if status:
            stmt = stmt.where(Claim.status == status)
        if before is not None:
            stmt = stmt.where(tuple_(Claim.created_at, Claim.id) < tuple_(*before))
        stmt = stmt.order_by(Claim.created_at.desc(), Claim.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())


async def insert_postbacks_once(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Inserts audit rows, skipping ids already stored (the spool delivers at least once)."""
    if not rows:
        return
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # executemany of one cached statement: compiling a many-row VALUES list cost more than the insert.
    await session.execute(insert(Postback).on_conflict_do_nothing(index_elements=["id"]), rows)
