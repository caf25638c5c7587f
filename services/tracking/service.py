"""Tracking use cases: each takes one transaction, calls the rules, commits. A postback's journey
is in services/tracking/ingestion.py; what a purchase owes the ledger, in crediting.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import InvalidArgument
from services.common.outbox import OutboxRelay
from services.common.pagination import (
    decode_cursor,
    decode_offset,
    encode_offset,
    keyset_page,
    page_size,
)
from services.tracking import catalogue as catalogue_file
from services.tracking import domain
from services.tracking.audit import AuditSpool
from services.tracking.crediting import settle
from services.tracking.domain import ClaimStatus, Decision, PurchaseFacts, PurchaseStatus
from services.tracking.ingestion import Ingestion, IngestResult, decide_claim
from services.tracking.models import Category, Claim, Click, Partner, PartnerRuleSet, Purchase, PurchaseReport
from services.tracking.postbacks import NetworkConfig, RawPostback
from services.tracking.records import facts_of, rules_of, set_decision, set_facts
from services.tracking.repository import TrackingRepository
from services.tracking.upstreams import IdentityClient

log = logging.getLogger("cashback.tracking")

OPERATOR_NETWORK = "operator"  # service activations reported by billing
CLAIM_NETWORK = "claim"  # purchases created by approved claims
MOSCOW = ZoneInfo("Europe/Moscow")  # the operator's calendar: a service is rewarded once a month


def _with_sub_id(site_url: str, click_id: str) -> str:
    parts = urlsplit(site_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("sub_id", click_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class Tracking:
    def __init__(self, db: Database, clock: Clock, *, identity: IdentityClient, networks: dict[str, NetworkConfig],
                 spool: AuditSpool, relay: OutboxRelay | None = None, accrual_delay: timedelta = timedelta(days=1),
                 pending_expiry: timedelta = timedelta(days=90), sweeps: bool = False) -> None:
        self._db = db
        self._clock = clock
        self._identity = identity
        self._sweeps = sweeps  # offer partner-purchase credits to redemption's automatic sweep
        self._relay = relay
        self._accrual_delay = accrual_delay
        self._pending_expiry = pending_expiry
        self.work_due = asyncio.Event()  # set when a purchase is confirmed: the accrual job looks now
        self._ingestion = Ingestion(db, clock, networks=networks, spool=spool, on_confirmed=self.work_due.set,
                                    on_settled=self._wake_relay, sweeps=sweeps)

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
                              terms_text=p.terms_text, search_text=f"{p.name} {p.slug}".casefold(),
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

    # --- postbacks (services/tracking/ingestion.py) -------------------------------------------

    async def ingest(self, raw: RawPostback) -> IngestResult:
        return await self._ingestion.ingest(raw)

    # --- lifecycle ---------------------------------------------------------------------------

    async def accrue_due(self, limit: int = 100) -> int:
        """Credits confirmed purchases whose delay has passed: in one transaction each is marked
        ACCRUED and what it owes the ledger is enqueued (services/tracking/crediting.py). Safe with
        replicas (SKIP LOCKED)."""
        async with self._db.transaction() as session:
            repo = TrackingRepository(session)
            now = self._clock.now()
            due = await repo.due_accruals(now - self._accrual_delay, limit)
            names: dict[str, str] = {}
            for purchase in due:
                purchase.status = PurchaseStatus.ACCRUED.value
                purchase.accrue_time = now
                purchase.updated_at = now
                if purchase.cashback_kopecks <= purchase.credited_kopecks:
                    continue  # nothing (more) to credit
                assert purchase.user_id is not None
                first = purchase.source != "activation" and purchase.credit_count == 0 and \
                    not await repo.has_credited_purchase(purchase.user_id, other_than=purchase.id)
                if purchase.partner_id not in names:
                    partner = await repo.partner(purchase.partner_id)
                    names[purchase.partner_id] = partner.name if partner else purchase.partner_id
                settle(session, purchase, now, partner_name=names[purchase.partner_id], first_partner_credit=first,
                       sweeps=self._sweeps)
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

    async def purchase(self, purchase_id: str) -> tuple[Purchase, list[PurchaseReport]]:
        """A purchase and the reports its shop sent about it, in the order of events (its history)."""
        async with self._db.sessions() as session:
            repo = TrackingRepository(session)
            row = await repo.purchase(purchase_id)
            if row is None:
                raise domain.PurchaseNotFound(f"no purchase {purchase_id!r}")
            return row, await repo.reports(purchase_id)

    async def pending_cashback(self, user_id: str) -> int:
        if not user_id:
            raise domain.UserIdRequired("user_id is required")
        async with self._db.sessions() as session:
            return await TrackingRepository(session).pending_cashback(user_id)

    # --- the operator's own services -----------------------------------------------------------

    async def report_activation(self, activation_id: str, user_id: str, service_code: str) -> tuple[Purchase, bool]:
        """An operator service's activation becomes a purchase credited like one (after the accrual
        delay), rewarded at most once per user, service and calendar month: subscribing again after
        unsubscribing earns nothing more that month (the purchase says why)."""
        if not activation_id or len(activation_id) > domain.MAX_ID_LENGTH:
            raise InvalidArgument(f"activation_id must have 1 to {domain.MAX_ID_LENGTH} characters",
                                  reason="ACTIVATION_ID_INVALID")
        async with self._db.sessions() as session:
            repo = TrackingRepository(session)
            partner = await repo.partner_by_service(service_code) if service_code else None
            existing = await repo.purchase_by_order(partner.slug, activation_id, "") if partner else None
        if existing is not None:
            return existing, True
        if partner is None:
            raise domain.ServiceUnknown(f"no operator service {service_code!r}", service_code=service_code)
        await self._identity.require_user(user_id, active=False)
        reward = rules_of(partner).tiers[0].fixed_kopecks
        try:
            async with self._db.transaction() as session:
                repo = TrackingRepository(session)
                now = self._clock.now()
                purchase = Purchase(
                    id=str(uuid.uuid4()), user_id=user_id, partner_id=partner.slug, network=OPERATOR_NETWORK,
                    order_id=activation_id, part_id="", source="activation", status=PurchaseStatus.CONFIRMED.value,
                    created_at=now, updated_at=now, confirm_time=now, commission_kopecks=0, credited_kopecks=0,
                    credit_count=0,
                )
                month = now.astimezone(MOSCOW).strftime("%Y-%m")
                first = await repo.add_activation_reward(user_id, partner.slug, month, purchase.id)
                set_facts(purchase, PurchaseFacts(0))
                decision = domain.service_reward(partner.name, reward, already_this_month=not first)
                set_decision(purchase, replace(decision, rule_version=partner.rule_version))
                session.add(purchase)
        except IntegrityError:
            async with self._db.sessions() as session:
                existing = await TrackingRepository(session).purchase_by_order(partner.slug, activation_id, "")
            assert existing is not None
            return existing, True
        self.work_due.set()
        return purchase, False

    # --- claims ------------------------------------------------------------------------------

    async def file_claim(self, claim: domain.ClaimInput) -> Claim:
        """An order pays once: a claim for an order already tracked for this user answers with that
        purchase (ORDER_ALREADY_TRACKED, its id in the metadata); an order tracked for, or claimed
        by, someone else cannot be claimed (ORDER_NOT_CLAIMABLE, never saying whose)."""
        domain.validate_claim(claim, self._clock.now().date())
        partner = await self.partner(claim.partner_id)
        order_id = claim.order_id.strip()
        try:
            async with self._db.transaction() as session:
                repo = TrackingRepository(session)
                if await repo.claim_for_order(claim.user_id, partner.slug, order_id) is not None:
                    raise domain.ClaimExists("a claim for this order already exists")
                for purchase in await repo.purchases_of_order(partner.slug, order_id):
                    if purchase.user_id == claim.user_id:
                        raise domain.OrderAlreadyTracked("this order is already tracked: see its purchase",
                                                         purchase_id=purchase.id)
                    if purchase.user_id is not None:
                        raise domain.OrderNotClaimable("this order cannot be claimed")
                if await repo.live_claim_for_order(partner.slug, order_id) is not None:
                    raise domain.OrderNotClaimable("this order cannot be claimed")
                row = Claim(id=str(uuid.uuid4()), user_id=claim.user_id, partner_id=partner.slug,
                            order_id=order_id, order_date=claim.order_date,
                            amount_kopecks=claim.amount_kopecks, comment=claim.comment,
                            status=ClaimStatus.OPEN.value, created_at=self._clock.now())
                session.add(row)
        except IntegrityError as exc:  # a concurrent claim of the same order won the unique index
            raise domain.OrderNotClaimable("this order cannot be claimed") from exc
        return row

    async def claims(self, user_id: str, status: ClaimStatus | None, size: int, token: str) -> tuple[list[Claim], str]:
        limit, before = page_size(size), decode_cursor(token)
        async with self._db.sessions() as session:
            rows = await TrackingRepository(session).claims(user_id, status.value if status else None, limit + 1,
                                                            before)
        return keyset_page(rows, limit)

    async def approve_claim(self, claim_id: str, decided_by: str) -> Claim:
        """Links the claim to the shop's purchase of the order when there is one — unattributed,
        with an amount that agrees (`domain.claim_amount_agrees`): it becomes the user's and keeps
        the shop's status (still pending: credited when the shop confirms) — or to the user's own
        purchase of it; creates a confirmed purchase from the claim otherwise. Never a second credit:
        a purchase of another user, or one the shop declined, is not the claim's to take."""
        async with self._db.transaction() as session:
            repo = TrackingRepository(session)
            now = self._clock.now()
            claim = await self._open_claim(repo, claim_id)
            partner = await repo.partner(claim.partner_id)
            assert partner is not None
            found = await repo.purchases_of_order(partner.slug, claim.order_id, lock=True)
            purchase = next((p for p in found if p.user_id == claim.user_id), None) or (found[0] if found else None)
            if purchase is not None and purchase.user_id is None:
                if PurchaseStatus(purchase.status) in (PurchaseStatus.REJECTED, PurchaseStatus.EXPIRED):
                    raise domain.OrderNotClaimable(f"the shop's purchase of this order is {purchase.status.lower()}")
                if not domain.claim_amount_agrees(claim.amount_kopecks, purchase.amount_kopecks):
                    raise domain.ClaimAmountMismatch("the shop reported another amount for this order",
                                                     reported_kopecks=str(purchase.amount_kopecks))
                purchase.user_id = claim.user_id
                rules = await repo.rule_set(partner.slug, purchase.rule_version) if purchase.rule_version else None
                set_decision(purchase, domain.decide(rules or rules_of(partner), facts_of(purchase)))
                purchase.updated_at = now
            elif purchase is not None and purchase.user_id != claim.user_id:
                raise domain.OrderNotClaimable("this order is tracked for someone else")
            elif purchase is None:
                purchase = Purchase(
                    id=str(uuid.uuid4()), user_id=claim.user_id, partner_id=partner.slug, network=CLAIM_NETWORK,
                    order_id=claim.order_id, part_id="", source="claim", status=PurchaseStatus.CONFIRMED.value,
                    created_at=now, updated_at=now, confirm_time=now, commission_kopecks=0, credited_kopecks=0,
                    credit_count=0,
                )
                facts = PurchaseFacts(claim.amount_kopecks)
                set_facts(purchase, facts)
                set_decision(purchase, domain.decide(rules_of(partner), facts))
                session.add(purchase)
            decide_claim(claim, ClaimStatus.APPROVED, purchase.id, decided_by, now)
        self.work_due.set()
        return claim

    async def reject_claim(self, claim_id: str, decided_by: str, reason: str) -> Claim:
        if not reason.strip():
            raise domain.ClaimInvalid("a rejection needs a reason", field="reason")
        async with self._db.transaction() as session:
            claim = await self._open_claim(TrackingRepository(session), claim_id)
            decide_claim(claim, ClaimStatus.REJECTED, "", decided_by, self._clock.now())
            claim.decision_reason = reason.strip()[:2000]
        return claim

    @staticmethod
    async def _open_claim(repo: TrackingRepository, claim_id: str) -> Claim:
        claim = await repo.claim(claim_id, lock=True)
        if claim is None:
            raise domain.ClaimNotFound(f"no claim {claim_id!r}")
        if claim.status != ClaimStatus.OPEN.value:
            raise domain.ClaimAlreadyDecided(f"claim {claim_id} is already {claim.status.lower()}")
        return claim
