"""A postback's journey, top to bottom.

1. Parse and authenticate (services/tracking/postbacks.py). A refused postback is stored in the
   audit (`postbacks`) and its error goes back.
2. Redis fast path (services/tracking/audit.py): a report the database has applied before is
   answered DUPLICATE with no SQL at all (its audit row is spooled); otherwise the fingerprint is
   claimed for a short while. Only the database's knowledge makes a duplicate: a claim left by a
   crash expires, and a copy that finds a claim in flight goes to the database.
3. Apply, in one transaction with the report's audit row and its `purchase_reports` row:
   - the partner of a report is the click's; a report naming another shop than its click's is
     refused (PARTNER_MISMATCH) and kept in the audit;
   - a purchase is (partner, order, part): the same order id at two shops is two purchases;
   - a new order (the common case) goes in with the other new orders of the moment (one
     transaction for many, `_create_many`); a known order is locked and moved by the NEWEST
     report (`domain.apply_report`): a report stored before is a DUPLICATE whenever it comes, an
     older one is stored and answered SUPERSEDED, and a move of a credited purchase enqueues the
     reversal or the extra credit (services/tracking/crediting.py);
   - an order with a claim (open, or approved into a purchase) joins it: it never pays twice.
4. After the commit, the fingerprint is confirmed in Redis: from then on copies are fast-path
   duplicates. With Redis off, steps 2 and 4 are skipped and the database gives the same answers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.batching import Batcher
from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import DomainError, Unauthenticated
from services.common.redis_store import WindowCounters
from services.tracking import domain, postbacks
from services.tracking.audit import AuditSpool, audit_record
from services.tracking.crediting import settle
from services.tracking.domain import ClaimStatus, Effect, PostbackOutcome, PurchaseStatus
from services.tracking.models import Claim, Purchase
from services.tracking.postbacks import NetworkConfig, RawPostback, Report
from services.tracking.records import decision_columns, facts_columns, parsed_rules, set_decision, set_facts
from services.tracking.repository import TrackingRepository

log = logging.getLogger("cashback.tracking")
AUTO_MATCH = "auto: the shop's report matched the claim"


@dataclass(frozen=True)
class IngestResult:
    postback_id: str
    outcome: PostbackOutcome
    purchase_id: str


@dataclass(frozen=True)
class _Applied:
    result: IngestResult
    detail: str = ""
    confirmed: bool = False  # a purchase is (still) CONFIRMED: the accrual job may look now
    settled: bool = False  # a ledger movement was enqueued: the relay may look now
    refusal: DomainError | None = None  # refused, stored in the audit only


class _Raced(Exception):
    """A concurrent postback created the order's purchase first: apply again, as a known order."""


def _mismatch(report: Report, click: Any) -> bool:
    return bool(click is not None and click.slug and report.partner_hint and report.partner_hint != click.slug)


def _partner_key(partner: Any) -> str:
    """The click's partner, else the partner the report names (if we know it), else "" (see
    TrackingRepository.attributions)."""
    return partner.slug if partner is not None else ""


def _report_row(report: Report, purchase_id: str, postback_id: str, now: datetime, effect: str) -> dict[str, Any]:
    return {"fingerprint": report.fingerprint, "purchase_id": purchase_id, "postback_id": postback_id,
            "status": report.status.value, "amount_kopecks": report.facts.amount_kopecks,
            "event_time": report.event_time, "received_at": now, "effect": effect}


class Ingestion:
    def __init__(self, db: Database, clock: Clock, *, networks: dict[str, NetworkConfig], spool: AuditSpool,
                 refusals: RefusalBudget, on_confirmed: Callable[[], None], on_settled: Callable[[], None],
                 sweeps: bool = False) -> None:
        self._db = db
        self._refusals = refusals
        self._clock = clock
        self._networks = networks
        self._spool = spool
        self._on_confirmed = on_confirmed
        self._on_settled = on_settled
        self._sweeps = sweeps
        # New orders of concurrent postbacks go in together: one transaction, a few statements.
        self._creations: Batcher[tuple[dict[str, Any], Report, datetime], _Applied | None] = Batcher(
            self._create_many, name="new-purchases", max_size=256, max_in_flight=2)

    async def ingest(self, raw: RawPostback) -> IngestResult:
        now = self._clock.now()
        try:
            report = postbacks.parse(raw, self._networks, now)
        except DomainError as exc:
            if not await self._refusals.allow(raw.remote_address, now):
                raise domain.RefusalsLimited(  # a flood from one address stores nothing more
                    "too many refused postbacks from this address; retry later", retry_after_seconds=60) from exc
            outcome = PostbackOutcome.UNAUTHENTICATED if isinstance(exc, Unauthenticated) else PostbackOutcome.REJECTED
            await self._audit(audit_record(**_raw_fields(raw), received_at=now, postback_id=str(uuid.uuid4()),
                                           outcome=outcome.value, detail=exc.reason, fingerprint="", order_id="",
                                           part_id="", refused=True))
            raise
        fingerprint = report.fingerprint
        record = audit_record(**_raw_fields(raw), received_at=now, postback_id=str(uuid.uuid4()),
                              outcome=PostbackOutcome.DUPLICATE.value, detail="replay of a report applied before",
                              fingerprint=fingerprint, order_id=report.order_id, part_id=report.part_id)
        claimed = await self._spool.claim_or_spool(fingerprint, record)
        if claimed is False:  # answered before any SQL; the audit row is spooled (services/tracking/audit.py)
            return IngestResult(record["id"], PostbackOutcome.DUPLICATE, "")
        try:
            applied = await self._apply(record, report, now)
        except BaseException:
            if claimed:
                await self._spool.release(fingerprint)
            raise
        if applied.refusal is not None:
            if claimed:
                await self._spool.release(fingerprint)
            raise applied.refusal
        await self._spool.confirm(fingerprint)
        if applied.confirmed:
            self._on_confirmed()
        if applied.settled:
            self._on_settled()
        return applied.result

    async def _audit(self, row: dict[str, Any]) -> None:
        async with self._db.transaction() as session:
            await TrackingRepository(session).insert_postbacks([row])

    async def _apply(self, record: dict[str, Any], report: Report, now: datetime) -> _Applied:
        """A new order goes in with the other new orders of the moment (`_create_many`); a known
        order, an order with a claim, or any postback of a batch that failed as a whole, takes its
        own transaction."""
        try:
            created = await self._creations.submit((record, report, now))
        except Exception:  # noqa: BLE001 - the batch failed as a whole (logged once): each tries on its own
            created = None
        if created is not None:
            return created
        for attempt in range(3):
            try:
                async with self._db.transaction() as session:
                    applied = await self._apply_one(session, record, report, now)
                return applied
            except (IntegrityError, _Raced):
                if attempt == 2:
                    raise  # concurrent creators: the loser's retry finds the winner's purchase
        raise AssertionError("unreachable")

    async def _create_many(self, items: list[tuple[dict[str, Any], Report, datetime]]) -> list[_Applied | None]:
        """New orders of many postbacks in one transaction: their purchases, audit rows and report
        rows. None for a postback whose order (part) has a purchase already, came twice in the batch,
        has a claim, or names another shop than its click's — nothing of it was written; the caller
        takes the full path (`_apply_one`)."""
        answers: list[_Applied | None] = [None] * len(items)
        async with self._db.transaction() as session:
            repo = TrackingRepository(session)
            found = await repo.attributions([(report.click_id, report.partner_hint) for _, report, _ in items])
            keys = [_partner_key(partner) for _, partner in found]
            busy = await repo.orders_with_claims(
                [(key, report.order_id) for key, (_, report, _) in zip(keys, items, strict=True)])
            made = []
            for i, ((record, report, now), (click, partner), key) in enumerate(zip(items, found, keys, strict=True)):
                if not _mismatch(report, click) and (key, report.order_id) not in busy:
                    made.append((i, *self._new_purchase(record, report, now, click, partner)))
            inserted = await repo.insert_purchases_if_new([row for _, _, row, _, _ in made])
            audit, reports = [], []
            for i, applied, row, audit_row, report_row in made:
                if row["id"] in inserted:
                    answers[i] = applied
                    audit.append(audit_row)
                    reports.append(report_row)
            await repo.insert_postbacks(audit)
            await repo.insert_reports(reports)
        return answers

    def _new_purchase(self, record: dict[str, Any], report: Report, now: datetime, click: Any, partner: Any,
                      user_id: str | None = None) -> tuple[_Applied, dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The purchase a report of a new order makes (click: id and user_id; partner: slug,
        rules_json and rule_version; either may be None; `user_id` attributes it without a click),
        the answer, `record` (its audit row) completed with the outcome, and its report row."""
        rules = parsed_rules(partner.rules_json, partner.rule_version) if partner else None
        user_id = click.user_id if click is not None else user_id
        if user_id is not None and rules is not None:
            decision, outcome, detail = domain.decide(rules, report.facts), PostbackOutcome.ACCEPTED, "created"
        else:
            decision, outcome = domain.unattributed(rules, report.facts), PostbackOutcome.UNATTRIBUTED
            detail = "no known click"
        status = domain.initial_status(report.status)
        if status is PurchaseStatus.REJECTED:
            outcome, detail = PostbackOutcome.REJECTED, "declined by the partner"
        purchase_id = str(uuid.uuid4())
        row = {
            "id": purchase_id, "user_id": user_id, "partner_id": _partner_key(partner),
            "network": report.network, "order_id": report.order_id, "part_id": report.part_id,
            "click_id": click.id if click else "", "source": "postback", "status": status.value,
            "event_time": report.event_time, "report_time": report.event_time, "created_at": now, "updated_at": now,
            "confirm_time": now if status is PurchaseStatus.CONFIRMED else None, "accrue_time": None,
            "commission_kopecks": report.commission_kopecks, "credited_kopecks": 0, "credit_count": 0,
            **facts_columns(report.facts), **decision_columns(decision)}
        postback_id = record.get("id", "")
        applied = _Applied(IngestResult(postback_id, outcome, purchase_id), detail,
                           confirmed=status is PurchaseStatus.CONFIRMED)
        audit_row = {**record, "outcome": outcome.value, "detail": detail, "purchase_id": purchase_id}
        return applied, row, audit_row, _report_row(report, purchase_id, postback_id, now, "APPLIED")

    async def _apply_one(self, session: AsyncSession, record: dict[str, Any], report: Report,
                         now: datetime) -> _Applied:
        """One postback in the caller's transaction, with its audit row (and report row)."""
        repo = TrackingRepository(session)
        [(click, partner)] = await repo.attributions([(report.click_id, report.partner_hint)])
        postback_id = record["id"]

        async def answer(outcome: PostbackOutcome, purchase_id: str, detail: str, *, effect: str = "",
                         **kw: Any) -> _Applied:
            await repo.insert_postbacks([{**record, "outcome": outcome.value, "detail": detail[:200],
                                          "purchase_id": purchase_id}])
            if effect:
                await repo.insert_reports([_report_row(report, purchase_id, postback_id, now, effect)])
            return _Applied(IngestResult(postback_id, outcome, purchase_id), detail, **kw)

        if _mismatch(report, click):
            detail = f"PARTNER_MISMATCH: the report names {report.partner_hint}, the click is of another shop"
            return await answer(PostbackOutcome.CONFLICT, "", detail, refusal=domain.PartnerMismatch(
                "the report names another shop than the one the click went to", postback_id=postback_id))
        key = _partner_key(partner)
        siblings = await repo.purchases_of_order(key, report.order_id, lock=True)
        purchase = next((p for p in siblings if p.part_id == report.part_id), None) or next(
            (p for p in siblings if p.source == "claim"), None)
        if purchase is None:
            return await self._create_one(repo, record, report, now, click, partner, answer)
        if await repo.report_stored(report.fingerprint):
            return await answer(PostbackOutcome.DUPLICATE, purchase.id, "replay of a report applied before")
        return await self._move(repo, purchase, report, now, answer)

    async def _create_one(self, repo: TrackingRepository, record: dict[str, Any], report: Report, now: datetime,
                          click: Any, partner: Any, answer: Any) -> _Applied:
        """A new order, joined to an open claim for it when the claim is the same person's (by the
        click) or, without a click, when the amounts agree: the claim is then approved by itself."""
        claim = await repo.live_claim_for_order(partner.slug, report.order_id, lock=True) if partner else None
        joins = claim is not None and claim.status == ClaimStatus.OPEN.value and (
            (click is not None and click.user_id == claim.user_id)
            or (click is None and domain.claim_amount_agrees(claim.amount_kopecks, report.facts.amount_kopecks)))
        applied, row, audit_row, report_row = self._new_purchase(
            record, report, now, click, partner, user_id=claim.user_id if joins and claim else None)
        if not await repo.insert_purchases_if_new([row]):
            raise _Raced()
        if joins and claim is not None:
            decide_claim(claim, ClaimStatus.APPROVED, row["id"], AUTO_MATCH, now)
        await repo.insert_postbacks([audit_row])
        await repo.insert_reports([report_row])
        return applied

    async def _move(self, repo: TrackingRepository, purchase: Purchase, report: Report, now: datetime,
                    answer: Any) -> _Applied:
        status = PurchaseStatus(purchase.status)
        move = domain.apply_report(status, purchase.amount_kopecks, purchase.report_time, report.status,
                                   report.facts.amount_kopecks, report.event_time,
                                   support_approved=purchase.source == "claim")
        if move.effect is Effect.SUPERSEDED:
            return await answer(PostbackOutcome.SUPERSEDED, purchase.id, move.detail, effect="SUPERSEDED")
        if report.event_time is not None and (purchase.report_time is None or report.event_time > purchase.report_time):
            purchase.report_time = report.event_time
        if report.commission_kopecks:
            purchase.commission_kopecks = report.commission_kopecks
        if move.effect is Effect.NONE:
            return await answer(PostbackOutcome.DUPLICATE, purchase.id, move.detail, effect="APPLIED")
        if purchase.amount_kopecks != report.facts.amount_kopecks:
            rules = await repo.rule_set(purchase.partner_id, purchase.rule_version) if purchase.partner_id else None
            set_facts(purchase, report.facts)
            set_decision(purchase, domain.decide(rules, report.facts) if purchase.user_id and rules
                         else domain.unattributed(rules, report.facts))
        if move.status is PurchaseStatus.CONFIRMED and status is not PurchaseStatus.CONFIRMED:
            purchase.confirm_time = now
        elif move.status is PurchaseStatus.PENDING:
            purchase.confirm_time = None
        purchase.status = move.status.value
        purchase.updated_at = now
        settled = False
        if purchase.credited_kopecks or move.status is PurchaseStatus.ACCRUED:
            partner = await repo.partner(purchase.partner_id)
            settled = settle(repo.session, purchase, now, partner_name=partner.name if partner else purchase.partner_id,
                             sweeps=self._sweeps) != 0
        if move.status is PurchaseStatus.REJECTED:
            outcome = PostbackOutcome.REJECTED
        else:
            outcome = PostbackOutcome.ACCEPTED if purchase.user_id else PostbackOutcome.UNATTRIBUTED
        return await answer(outcome, purchase.id, move.detail, effect="APPLIED", settled=settled,
                            confirmed=move.status is PurchaseStatus.CONFIRMED)


class RefusalBudget:
    """How many refused postbacks (bad signature, malformed…) one client address may have stored per
    minute; past it they are answered 429 RATE_LIMITED and not stored, so that a flood without
    credentials cannot fill the audit. Counted in Redis across replicas, in the process without."""

    def __init__(self, counters: WindowCounters, per_minute: int) -> None:
        self._counters = counters
        self._per_minute = per_minute
        self._local: dict[str, int] = {}
        self._local_window = -1

    async def allow(self, address: str, now: datetime) -> bool:
        if self._per_minute <= 0:
            return True
        window = int(now.timestamp()) // 60
        key = f"refused-postbacks:{address}:{window}"
        count = await self._counters.hit(key, ttl_seconds=120)
        if count is None:
            if window != self._local_window:
                self._local, self._local_window = {}, window
            count = self._local[key] = self._local.get(key, 0) + 1
        return count <= self._per_minute


def decide_claim(claim: Claim, status: ClaimStatus, purchase_id: str, decided_by: str, now: datetime) -> None:
    """The one way a claim is decided (by support, or by itself when its order's report arrives)."""
    claim.status = status.value
    claim.purchase_id = purchase_id
    claim.decided_by = decided_by
    claim.decided_at = now


def _raw_fields(raw: RawPostback) -> dict[str, Any]:
    return {"network": raw.network, "http_method": raw.http_method, "query_string": raw.query_string,
            "body": raw.body, "headers": raw.headers, "remote_address": raw.remote_address}

