"""The operator's own services (music, TV, ringback tone): billing reports an activation, which
becomes a purchase credited like one, once per user, service and calendar month."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import InvalidArgument
from services.tracking import domain
from services.tracking.domain import PurchaseFacts, PurchaseStatus
from services.tracking.models import Purchase
from services.tracking.records import rules_of, set_decision, set_facts
from services.tracking.repository import TrackingRepository
from services.tracking.upstreams import IdentityClient

OPERATOR_NETWORK = "operator"  # service activations reported by billing
MOSCOW = ZoneInfo("Europe/Moscow")  # the operator's calendar: a service is rewarded once a month


class Activations:
    def __init__(self, db: Database, clock: Clock, *, identity: IdentityClient,
                 on_confirmed: Callable[[], None]) -> None:
        self._db = db
        self._clock = clock
        self._identity = identity
        self._on_confirmed = on_confirmed

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
        self._on_confirmed()
        return purchase, False
