"""Tracking use cases: each takes one transaction, calls the rules, commits.

Postback idempotency has two layers. Redis (`AuditSpool.claim_or_spool`, SET NX on the postback's
fingerprint: network, order, part, status, amount) answers exact duplicates and concurrent copies
before any SQL at all — their audit rows are spooled in Redis in the same round trip and flushed
to the table in batches (see services/tracking/audit.py); a claim whose processing fails is
released so that the retry is not taken for a duplicate. Underneath, the unique constraint on
purchases (network, order_id, part_id) and a row lock on the purchase are the truth: with Redis
off, the database path gives the same answers. Every postback, whatever its fate, leaves a row in
`postbacks` (the audit); refused ones are committed before the error goes back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.batching import Batcher
from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import DomainError, InvalidArgument, Unauthenticated
from services.common.outbox import OutboxRelay, enqueue
from services.common.pagination import (
    decode_cursor,
    decode_offset,
    encode_offset,
    keyset_page,
    page_size,
)
from services.common.redis_store import Fingerprints
from services.tracking import catalogue as catalogue_file
from services.tracking import domain, postbacks, search
from services.tracking.audit import AuditSpool, audit_record
from services.tracking.domain import (
    Change,
    Channel,
    ClaimStatus,
    CustomerType,
    Decision,
    PostbackOutcome,
    PurchaseFacts,
    PurchaseStatus,
    ReportedStatus,
    RuleSet,
)
from services.tracking.models import Category, Claim, Click, OutboxMessage, Partner, PartnerRuleSet, Purchase
from services.tracking.postbacks import NetworkConfig, RawPostback, Report
from services.tracking.repository import TrackingRepository
from services.tracking.upstreams import CREDIT_TOPIC, SWEEP_TOPIC, IdentityClient, credit_payload

log = logging.getLogger("cashback.tracking")

OPERATOR_NETWORK = "operator"  # service activations reported by billing
CLAIM_NETWORK = "claim"  # purchases created by approved claims
_REPORTED_OF_STATUS = {
    PurchaseStatus.PENDING: ReportedStatus.PENDING, PurchaseStatus.CONFIRMED: ReportedStatus.APPROVED,
}


@dataclass(frozen=True)
class IngestResult:
    postback_id: str
    outcome: PostbackOutcome
    purchase_id: str


@dataclass(frozen=True)
class _Applied:
    result: IngestResult
    detail: str = ""
    stale_fingerprint: str = ""  # a correction makes the old (status, amount) fingerprint new again
    confirmed: bool = False


def facts_of(p: Purchase) -> PurchaseFacts:
    return PurchaseFacts(p.amount_kopecks, Channel(p.channel), CustomerType(p.customer_type), p.destination_domain,
                         p.other_loyalty_used)


def decision_of(p: Purchase) -> Decision:
    return Decision.from_json(p.decision_json)


def rules_of(partner: Partner) -> RuleSet:
    return _rules(partner.rules_json, partner.rule_version)


@functools.lru_cache(maxsize=1024)
def _rules(rules_json: str, version: int) -> RuleSet:
    """A rule set is a pure function of its stored JSON (RuleSet is immutable): parsed once."""
    return RuleSet.from_json(rules_json, version)


def _facts_columns(facts: PurchaseFacts) -> dict[str, object]:
    return {"amount_kopecks": facts.amount_kopecks, "channel": facts.channel.value,
            "customer_type": facts.customer_type.value, "destination_domain": facts.destination_domain[:253],
            "other_loyalty_used": facts.other_loyalty_used}


def _decision_columns(decision: Decision) -> dict[str, object]:
    return {"decision_json": decision.to_json(), "cashback_kopecks": decision.cashback_kopecks,
            "rule_version": decision.rule_version}


def _with_sub_id(site_url: str, click_id: str) -> str:
    parts = urlsplit(site_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("sub_id", click_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class Tracking:
    def __init__(self, db: Database, clock: Clock, *, identity: IdentityClient, fingerprints: Fingerprints,
                 networks: dict[str, NetworkConfig], spool: AuditSpool, relay: OutboxRelay | None = None,
                 accrual_delay: timedelta = timedelta(days=1), pending_expiry: timedelta = timedelta(days=90),
                 sweeps: bool = False) -> None:
        self._db = db
        self._clock = clock
        self._identity = identity
        self._fingerprints = fingerprints
        self._spool = spool
        self._sweeps = sweeps  # offer partner-purchase credits to redemption's automatic sweep
        self._networks = networks
        self._relay = relay
        self._accrual_delay = accrual_delay
        self._pending_expiry = pending_expiry
        self.work_due = asyncio.Event()  # set when a purchase is confirmed: the accrual job looks now
        # New orders of concurrent postbacks go in together: one transaction, a few statements.
        self._creations: Batcher[tuple[dict[str, Any], Report, datetime], _Applied | None] = Batcher(
            self._create_many, name="new-purchases", max_size=256, max_in_flight=2)

    def set_relay(self, relay: OutboxRelay) -> None:
        self._relay = relay

    def _wake_relay(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    # --- catalogue ---------------------------------------------------------------------------

    async def seed_catalogue(self, path: str) -> int:
        """Upserts categories and partners by slug. A partner whose terms changed gets a new rule-set
        version; purchases keep the version they were computed with. Idempotent; concurrent replicas
        seeding at once race on primary keys and the loser retries."""
        data = await asyncio.to_thread(catalogue_file.load, path)
        for attempt in range(3):
            try:
                return await self._seed(data)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _seed(self, data: catalogue_file.Catalogue) -> int:
        changed = 0
        async with self._db.transaction() as session:
            repo = TrackingRepository(session)
            now = self._clock.now()
            categories = await repo.all_categories()
            for spec in data.categories:
                row = categories.get(spec.slug)
                if row is None:
                    session.add(Category(slug=spec.slug, name=spec.name, position=spec.position))
                else:
                    row.name, row.position = spec.name, spec.position
            await session.flush()
            partners = await repo.all_partners()
            for p in data.partners:
                row = partners.get(p.slug)
                terms = p.rules.to_json()
                fields = dict(name=p.name, category_id=p.category, description=p.description, site_url=p.site_url,
                              terms_text=p.terms_text, search_text=search.search_text(p.name, p.slug, p.aliases),
                              service_code=p.service_code)
                if row is None:
                    session.add(Partner(slug=p.slug, rule_version=1, rules_json=terms, updated_at=now, **fields))
                    session.add(PartnerRuleSet(partner_id=p.slug, version=1, rules_json=terms, created_at=now))
                    changed += 1
                    continue
                if any(getattr(row, k) != v for k, v in fields.items()):
                    for k, v in fields.items():
                        setattr(row, k, v)
                    row.updated_at = now
                    changed += 1
                if row.rules_json != terms:
                    row.rule_version += 1
                    row.rules_json = terms
                    row.updated_at = now
                    session.add(PartnerRuleSet(partner_id=p.slug, version=row.rule_version, rules_json=terms,
                                               created_at=now))
                    changed += 1
        log.info("catalogue seeded: %d partners, %d changed", len(data.partners), changed)
        return changed

    async def categories(self) -> list[tuple[Category, int]]:
        async with self._db.sessions() as session:
            return await TrackingRepository(session).categories()

    async def partners(self, category: str, query: str, size: int, token: str) -> tuple[list[Partner], str, int]:
        limit, offset = page_size(size), decode_offset(token)
        async with self._db.sessions() as session:
            rows, total = await TrackingRepository(session).partners(category, query.strip(), offset, limit)
        next_token = encode_offset(offset + limit) if offset + limit < total else ""
        return rows, next_token, total

    async def partner(self, slug: str) -> Partner:
        async with self._db.sessions() as session:
            row = await TrackingRepository(session).partner(slug)
        if row is None:
            raise domain.PartnerNotFound(f"no partner {slug!r}", partner_id=slug)
        return row

    async def quote(self, slug: str, facts: PurchaseFacts) -> Decision:
        if not 0 < facts.amount_kopecks <= domain.MAX_AMOUNT_KOPECKS:
            raise domain.AmountInvalid("amount_kopecks must be a positive number of kopecks")
        return domain.decide(rules_of(await self.partner(slug)), facts)

    # --- clicks ------------------------------------------------------------------------------

    async def record_click(self, user_id: str, partner_slug: str) -> tuple[str, str]:
        partner = await self.partner(partner_slug)
        await self._identity.require_user(user_id, active=True)
        click_id = secrets.token_urlsafe(18)
        async with self._db.transaction() as session:
            session.add(Click(id=click_id, user_id=user_id, partner_id=partner.slug, created_at=self._clock.now()))
        return click_id, _with_sub_id(partner.site_url, click_id)

    # --- postbacks ---------------------------------------------------------------------------

    async def ingest(self, raw: RawPostback) -> IngestResult:
        now = self._clock.now()
        try:
            report = postbacks.parse(raw, self._networks, now)
        except DomainError as exc:
            outcome = PostbackOutcome.UNAUTHENTICATED if isinstance(exc, Unauthenticated) else PostbackOutcome.REJECTED
            await self._audit(raw, now, outcome, exc.reason)
            raise
        fingerprint = report.fingerprint
        record = audit_record(
            postback_id=str(uuid.uuid4()), network=raw.network, http_method=raw.http_method,
            query_string=raw.query_string, body=raw.body, headers=raw.headers, remote_address=raw.remote_address,
            received_at=now, outcome=PostbackOutcome.DUPLICATE.value, detail="fingerprint seen",
            fingerprint=fingerprint, order_id=report.order_id, part_id=report.part_id)
        claimed = await self._spool.claim_or_spool(fingerprint, record)
        if claimed is False:  # answered before any SQL; the audit row is spooled (services/tracking/audit.py)
            return IngestResult(record["id"], PostbackOutcome.DUPLICATE, "")
        try:
            applied = await self._apply(record, report, now)
        except BaseException:
            if claimed:
                await self._fingerprints.release(fingerprint)
            raise
        if applied.result.outcome is PostbackOutcome.CONFLICT:
            if claimed:
                await self._fingerprints.release(fingerprint)
            raise domain.PurchaseConflict(f"postback refused: {applied.detail}",
                                          purchase_id=applied.result.purchase_id,
                                          postback_id=applied.result.postback_id)
        if applied.stale_fingerprint:
            await self._fingerprints.release(applied.stale_fingerprint)
        if applied.confirmed:
            self.work_due.set()
        return applied.result

    async def _audit(self, raw: RawPostback, now: datetime, outcome: PostbackOutcome, detail: str) -> None:
        async with self._db.transaction() as session:
            await TrackingRepository(session).insert_postbacks([audit_record(
                postback_id=str(uuid.uuid4()), network=raw.network, http_method=raw.http_method,
                query_string=raw.query_string, body=raw.body, headers=raw.headers, remote_address=raw.remote_address,
                received_at=now, outcome=outcome.value, detail=detail, fingerprint="", order_id="", part_id="")])

    async def _apply(self, record: dict[str, Any], report: Report, now: datetime) -> _Applied:
        """A new order goes in with the other new orders of the moment (`_create_many`); a known
        order, or any postback of a batch that failed as a whole, takes its own transaction."""
        try:
            created = await self._creations.submit((record, report, now))
        except Exception:  # noqa: BLE001 - the batch failed as a whole (logged once): each tries on its own
            created = None
        return created if created is not None else await self._apply_with_retry(record, report, now)

    async def _create_many(self, items: list[tuple[dict[str, Any], Report, datetime]]) -> list[_Applied | None]:
        """`_create_from_report` for many postbacks in one transaction: the purchases of new orders
        and their audit rows go in; None for a postback whose order (part) already has a purchase
        (or came twice in the batch) — nothing of it was written, the caller takes the full path."""
        async with self._db.transaction() as session:
            repo = TrackingRepository(session)
            found = await repo.attributions([(report.click_id, report.partner_hint) for _, report, _ in items])
            made = [self._new_purchase(record, report, now, click, partner)
                    for (record, report, now), (click, partner) in zip(items, found, strict=True)]
            inserted = await repo.insert_purchases_if_new([row for _, row, _ in made])
            answers: list[_Applied | None] = []
            audit = []
            for (applied, row, audit_row) in made:
                if row["id"] in inserted:
                    answers.append(applied)
                    audit.append(audit_row)
                else:
                    answers.append(None)
            await repo.insert_postbacks(audit)
        return answers

    async def _apply_with_retry(self, record: dict[str, Any], report: Report, now: datetime) -> _Applied:
        """Applies the report and stores `record` (its audit row) with the outcome, in one transaction."""
        for attempt in range(2):
            try:
                async with self._db.transaction() as session:
                    applied = await self._apply_known(session, report, now)
                    await TrackingRepository(session).insert_postbacks([{
                        **record, "outcome": applied.result.outcome.value, "detail": applied.detail[:200],
                        "purchase_id": applied.result.purchase_id}])
                return replace(applied, result=replace(applied.result, postback_id=record["id"]))
            except IntegrityError:
                if attempt == 1:
                    raise  # two concurrent creators: the loser's retry finds the winner's purchase
        raise AssertionError("unreachable")

    async def _apply_known(self, session: AsyncSession, report: Report, now: datetime) -> _Applied:
        """`_Applied.result.postback_id` is filled in by the caller's audit row. A new order (the
        common case) costs one lookup and one INSERT; a known one is locked and moved."""
        repo = TrackingRepository(session)
        created = await self._create_from_report(repo, report, now)
        if created is not None:
            return created
        purchase = await repo.purchase_by_order(report.network, report.order_id, report.part_id, lock=True)
        if purchase is None:  # the conflicting purchase is gone: purchases are never deleted, so never here
            raise AssertionError(f"purchase {report.network}/{report.order_id} conflicted yet is not found")
        status = PurchaseStatus(purchase.status)
        move = domain.transition(status, purchase.amount_kopecks, report.status, report.facts.amount_kopecks)
        attributed = purchase.user_id is not None
        accepted = PostbackOutcome.ACCEPTED if attributed else PostbackOutcome.UNATTRIBUTED

        def result(outcome: PostbackOutcome, detail: str, **kw: object) -> _Applied:
            return _Applied(IngestResult("", outcome, purchase.id), detail, **kw)  # type: ignore[arg-type]

        if move.change is Change.NONE:
            return result(PostbackOutcome.DUPLICATE, move.detail or "nothing new")
        if move.change is Change.CONFLICT:
            if await repo.fingerprint_applied(report.fingerprint):
                # A late replay of a report that was applied before (the Redis path says the same).
                return result(PostbackOutcome.DUPLICATE, "replay of an earlier postback")
            return result(PostbackOutcome.CONFLICT, move.detail)
        if move.change is Change.REJECT:
            purchase.status = PurchaseStatus.REJECTED.value
            purchase.updated_at = now
            return result(PostbackOutcome.REJECTED, "declined by the partner")
        stale = ""
        if purchase.amount_kopecks != report.facts.amount_kopecks or move.change is Change.AMOUNT:
            if status in _REPORTED_OF_STATUS:
                stale = postbacks.fingerprint_of(report.network, report.order_id, report.part_id,
                                                 _REPORTED_OF_STATUS[status], purchase.amount_kopecks)
            await self._recompute(repo, purchase, report.facts)
        detail = f"amount corrected to {report.facts.amount_kopecks}" if move.change is Change.AMOUNT else "confirmed"
        if move.change is Change.CONFIRM:
            purchase.status = PurchaseStatus.CONFIRMED.value
            purchase.confirm_time = now
        purchase.updated_at = now
        return result(accepted, detail, stale_fingerprint=stale, confirmed=move.change is Change.CONFIRM)

    async def _recompute(self, repo: TrackingRepository, purchase: Purchase, facts: PurchaseFacts) -> None:
        """New facts (an amount correction), the purchase's own rule version."""
        rules = await repo.rule_set(purchase.partner_id, purchase.rule_version) if purchase.partner_id else None
        self._set_facts(purchase, facts)
        decision = domain.decide(rules, facts) if purchase.user_id and rules else domain.unattributed(rules, facts)
        self._set_decision(purchase, decision)

    @staticmethod
    def _set_facts(purchase: Purchase, facts: PurchaseFacts) -> None:
        for name, value in _facts_columns(facts).items():
            setattr(purchase, name, value)

    @staticmethod
    def _set_decision(purchase: Purchase, decision: Decision) -> None:
        for name, value in _decision_columns(decision).items():
            setattr(purchase, name, value)

    async def _create_from_report(self, repo: TrackingRepository, report: Report, now: datetime) -> _Applied | None:
        """Inserts the purchase the report describes, unless the order (part) has one already: then
        None, and nothing was written (INSERT ... ON CONFLICT DO NOTHING, without the ORM)."""
        [(click, partner)] = await repo.attributions([(report.click_id, report.partner_hint)])
        applied, row, _ = self._new_purchase({}, report, now, click, partner)
        return applied if row["id"] in await repo.insert_purchases_if_new([row]) else None

    def _new_purchase(self, record: dict[str, Any], report: Report, now: datetime, click: Any, partner: Any
                      ) -> tuple[_Applied, dict[str, Any], dict[str, Any]]:
        """The purchase a report of a new order makes (click: id and user_id; partner: slug,
        rules_json and rule_version; either may be None), the answer, and `record` (its audit row)
        completed with the outcome."""
        rules = _rules(partner.rules_json, partner.rule_version) if partner else None
        if click is not None and rules is not None:
            decision, outcome, detail = domain.decide(rules, report.facts), PostbackOutcome.ACCEPTED, "created"
        else:
            decision, outcome = domain.unattributed(rules, report.facts), PostbackOutcome.UNATTRIBUTED
            detail = "no known click"
        status = domain.initial_status(report.status)
        if status is PurchaseStatus.REJECTED:
            outcome, detail = PostbackOutcome.REJECTED, "declined by the partner"
        purchase_id = str(uuid.uuid4())
        row = {
            "id": purchase_id, "user_id": click.user_id if click else None,
            "partner_id": partner.slug if partner else "", "network": report.network, "order_id": report.order_id,
            "part_id": report.part_id, "click_id": click.id if click else "", "source": "postback",
            "status": status.value, "event_time": report.event_time, "created_at": now, "updated_at": now,
            "confirm_time": now if status is PurchaseStatus.CONFIRMED else None, "accrue_time": None,
            **_facts_columns(report.facts), **_decision_columns(decision)}
        applied = _Applied(IngestResult(record.get("id", ""), outcome, purchase_id), detail,
                           confirmed=status is PurchaseStatus.CONFIRMED)
        return applied, row, {**record, "outcome": outcome.value, "detail": detail, "purchase_id": purchase_id}

    # --- lifecycle ---------------------------------------------------------------------------

    async def accrue_due(self, limit: int = 100) -> int:
        """Credits confirmed purchases whose delay has passed: in one transaction each is marked
        ACCRUED and its credit is enqueued to the outbox. Safe with replicas (SKIP LOCKED)."""
        async with self._db.transaction() as session:
            repo = TrackingRepository(session)
            now = self._clock.now()
            due = await repo.due_accruals(now - self._accrual_delay, limit)
            for purchase in due:
                purchase.status = PurchaseStatus.ACCRUED.value
                purchase.accrue_time = now
                purchase.updated_at = now
                if purchase.cashback_kopecks <= 0:
                    continue  # accrued with nothing to credit
                assert purchase.user_id is not None
                first = not await repo.has_credited_purchase(purchase.user_id, other_than=purchase.id)
                partner = await repo.partner(purchase.partner_id)
                payload = credit_payload(
                    transfer_id=f"cashback:{purchase.id}", system="CASHBACK_FUNDING", kind="CASHBACK",
                    user_id=purchase.user_id, amount_kopecks=purchase.cashback_kopecks,
                    reference=purchase.id, notify_key=f"cashback-credited:{purchase.id}",
                    partner_name=partner.name if partner else purchase.partner_id, referral_check=first)
                enqueue(session, OutboxMessage, topic=CREDIT_TOPIC, key=f"cashback:{purchase.id}", now=now,
                        payload=payload)
                if self._sweeps:
                    # Its own message, committed with the credit's (see services/tracking/upstreams.py).
                    enqueue(session, OutboxMessage, topic=SWEEP_TOPIC, key=f"sweep:cashback:{purchase.id}", now=now,
                            payload=payload)
        if due:
            log.info("accrued %d purchases", len(due))
            self._wake_relay()
        return len(due)

    async def expire_due(self, limit: int = 500) -> int:
        async with self._db.transaction() as session:
            now = self._clock.now()
            due = await TrackingRepository(session).due_expiry(now - self._pending_expiry, limit)
            for purchase in due:
                purchase.status = PurchaseStatus.EXPIRED.value
                purchase.updated_at = now
        if due:
            log.info("expired %d purchases pending since before %s", len(due), now - self._pending_expiry)
        return len(due)

    async def purchases(self, user_id: str, status: PurchaseStatus | None, size: int,
                        token: str) -> tuple[list[Purchase], str]:
        if not user_id:
            raise domain.UserIdRequired("user_id is required")
        limit, before = page_size(size), decode_cursor(token)
        async with self._db.sessions() as session:
            rows = await TrackingRepository(session).purchases(user_id, status.value if status else None, limit + 1,
                                                               before)
        return keyset_page(rows, limit)

    async def purchase(self, purchase_id: str) -> Purchase:
        async with self._db.sessions() as session:
            row = await TrackingRepository(session).purchase(purchase_id)
        if row is None:
            raise domain.PurchaseNotFound(f"no purchase {purchase_id!r}")
        return row

    async def pending_cashback(self, user_id: str) -> int:
        if not user_id:
            raise domain.UserIdRequired("user_id is required")
        async with self._db.sessions() as session:
            return await TrackingRepository(session).pending_cashback(user_id)

    # --- the operator's own services -----------------------------------------------------------

    async def report_activation(self, activation_id: str, user_id: str, service_code: str) -> tuple[Purchase, bool]:
        if not activation_id or len(activation_id) > domain.MAX_ID_LENGTH:
            raise InvalidArgument(f"activation_id must have 1 to {domain.MAX_ID_LENGTH} characters",
                                  reason="ACTIVATION_ID_INVALID")
        async with self._db.sessions() as session:
            repo = TrackingRepository(session)
            existing = await repo.purchase_by_order(OPERATOR_NETWORK, activation_id, "")
            partner = await repo.partner_by_service(service_code) if service_code else None
        if existing is not None:
            return existing, True
        if partner is None:
            raise domain.ServiceUnknown(f"no operator service {service_code!r}", service_code=service_code)
        await self._identity.require_user(user_id, active=False)
        reward = rules_of(partner).tiers[0].fixed_kopecks
        try:
            async with self._db.transaction() as session:
                now = self._clock.now()
                purchase = Purchase(
                    id=str(uuid.uuid4()), user_id=user_id, partner_id=partner.slug, network=OPERATOR_NETWORK,
                    order_id=activation_id, part_id="", source="activation", status=PurchaseStatus.ACCRUED.value,
                    created_at=now, updated_at=now, confirm_time=now, accrue_time=now,
                )
                self._set_facts(purchase, PurchaseFacts(0))
                self._set_decision(purchase, replace(domain.service_reward(partner.name, reward),
                                                     rule_version=partner.rule_version))
                session.add(purchase)
                await session.flush()
                if reward > 0:
                    enqueue(session, OutboxMessage, topic=CREDIT_TOPIC, key=f"activation:{activation_id}", now=now,
                            payload=credit_payload(
                                transfer_id=f"activation:{activation_id}", system="SERVICE_FUNDING",
                                kind="SERVICE_ACTIVATION", user_id=user_id, amount_kopecks=reward,
                                reference=activation_id, notify_key=f"cashback-credited:{purchase.id}",
                                partner_name=partner.name, referral_check=False))
        except IntegrityError:
            async with self._db.sessions() as session:
                existing = await TrackingRepository(session).purchase_by_order(OPERATOR_NETWORK, activation_id, "")
            assert existing is not None
            return existing, True
        self._wake_relay()
        return purchase, False

    # --- claims ------------------------------------------------------------------------------

    async def file_claim(self, claim: domain.ClaimInput) -> Claim:
        domain.validate_claim(claim, self._clock.now().date())
        partner = await self.partner(claim.partner_id)
        try:
            async with self._db.transaction() as session:
                repo = TrackingRepository(session)
                if await repo.claim_for_order(claim.user_id, partner.slug, claim.order_id) is not None:
                    raise domain.ClaimExists("a claim for this order already exists")
                row = Claim(id=str(uuid.uuid4()), user_id=claim.user_id, partner_id=partner.slug,
                            order_id=claim.order_id.strip(), order_date=claim.order_date,
                            amount_kopecks=claim.amount_kopecks, comment=claim.comment,
                            status=ClaimStatus.OPEN.value, created_at=self._clock.now())
                session.add(row)
        except IntegrityError as exc:
            raise domain.ClaimExists("a claim for this order already exists") from exc
        return row

    async def claims(self, user_id: str, status: ClaimStatus | None, size: int, token: str) -> tuple[list[Claim], str]:
        limit, before = page_size(size), decode_cursor(token)
        async with self._db.sessions() as session:
            rows = await TrackingRepository(session).claims(user_id, status.value if status else None, limit + 1,
                                                            before)
        return keyset_page(rows, limit)

    async def approve_claim(self, claim_id: str, decided_by: str) -> Claim:
        """Links the unattributed purchase the claim describes, if any (attaching it to the user
        and confirming it), or creates a confirmed purchase from the claim; either accrues."""
        async with self._db.transaction() as session:
            repo = TrackingRepository(session)
            now = self._clock.now()
            claim = await self._open_claim(repo, claim_id)
            partner = await repo.partner(claim.partner_id)
            assert partner is not None
            purchase = await repo.unattributed_match(claim.partner_id, claim.order_id)
            if purchase is not None:
                purchase.user_id = claim.user_id
                purchase.partner_id = partner.slug
                rules = await repo.rule_set(partner.slug, purchase.rule_version) if purchase.rule_version else None
                self._set_decision(purchase, domain.decide(rules or rules_of(partner), facts_of(purchase)))
                purchase.status = PurchaseStatus.CONFIRMED.value
                purchase.confirm_time = purchase.confirm_time or now
                purchase.updated_at = now
            else:
                purchase = Purchase(
                    id=str(uuid.uuid4()), user_id=claim.user_id, partner_id=partner.slug, network=CLAIM_NETWORK,
                    order_id=claim.order_id, part_id=claim.id, source="claim",
                    status=PurchaseStatus.CONFIRMED.value, created_at=now, updated_at=now, confirm_time=now,
                )
                facts = PurchaseFacts(claim.amount_kopecks)
                self._set_facts(purchase, facts)
                self._set_decision(purchase, domain.decide(rules_of(partner), facts))
                session.add(purchase)
            claim.status = ClaimStatus.APPROVED.value
            claim.purchase_id = purchase.id
            claim.decided_by = decided_by
            claim.decided_at = now
        self.work_due.set()
        return claim

    async def reject_claim(self, claim_id: str, decided_by: str, reason: str) -> Claim:
        if not reason.strip():
            raise domain.ClaimInvalid("a rejection needs a reason", field="reason")
        async with self._db.transaction() as session:
            claim = await self._open_claim(TrackingRepository(session), claim_id)
            claim.status = ClaimStatus.REJECTED.value
            claim.decision_reason = reason.strip()[:2000]
            claim.decided_by = decided_by
            claim.decided_at = self._clock.now()
        return claim

    @staticmethod
    async def _open_claim(repo: TrackingRepository, claim_id: str) -> Claim:
        claim = await repo.claim(claim_id, lock=True)
        if claim is None:
            raise domain.ClaimNotFound(f"no claim {claim_id!r}")
        if claim.status != ClaimStatus.OPEN.value:
            raise domain.ClaimAlreadyDecided(f"claim {claim_id} is already {claim.status.lower()}")
        return claim
