"""Claims («кэшбэк не пришёл»): filed by users, decided by support or matched by the order's own
report (services/tracking/ingestion.py). An order pays once: see docs/purchases.md."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.db import Database
from services.common.pagination import decode_cursor, keyset_page, page_size
from services.tracking import domain
from services.tracking.domain import ClaimStatus, PurchaseFacts, PurchaseStatus
from services.tracking.ingestion import decide_claim
from services.tracking.models import Claim, Purchase
from services.tracking.records import facts_of, rules_of, set_decision, set_facts
from services.tracking.repository import TrackingRepository

CLAIM_NETWORK = "claim"  # purchases created by approved claims


class Claims:
    def __init__(self, db: Database, clock: Clock, *, on_confirmed: Callable[[], None]) -> None:
        self._db = db
        self._clock = clock
        self._on_confirmed = on_confirmed

    async def file_claim(self, claim: domain.ClaimInput) -> Claim:
        """An order pays once: a claim for an order already tracked for this user answers with that
        purchase (ORDER_ALREADY_TRACKED, its id in the metadata); an order tracked for, or claimed
        by, someone else cannot be claimed (ORDER_NOT_CLAIMABLE, never saying whose)."""
        domain.validate_claim(claim, self._clock.now().date())
        order_id = claim.order_id.strip()
        try:
            async with self._db.transaction() as session:
                repo = TrackingRepository(session)
                partner = await repo.partner(claim.partner_id)
                if partner is None:
                    raise domain.PartnerNotFound(f"no partner {claim.partner_id!r}", partner_id=claim.partner_id)
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

    async def page(self, user_id: str, status: ClaimStatus | None, size: int, token: str) -> tuple[list[Claim], str]:
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
        self._on_confirmed()
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
