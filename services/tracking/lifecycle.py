"""A purchase's life after its reports: crediting when the delay has passed, expiry of what the
shop never confirmed, and what the user sees of it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from services.common.clock import Clock
from services.common.db import Database
from services.common.pagination import decode_cursor, keyset_page, page_size
from services.tracking import domain
from services.tracking.crediting import settle
from services.tracking.domain import PurchaseStatus
from services.tracking.models import Purchase, PurchaseReport
from services.tracking.repository import TrackingRepository

log = logging.getLogger("cashback.tracking")


class Lifecycle:
    def __init__(self, db: Database, clock: Clock, *, accrual_delay: timedelta, pending_expiry: timedelta,
                 on_settled: Callable[[], None], sweeps: bool = False) -> None:
        self._db = db
        self._clock = clock
        self._accrual_delay = accrual_delay
        self._pending_expiry = pending_expiry
        self._on_settled = on_settled
        self._sweeps = sweeps  # offer partner-purchase credits to redemption's automatic sweep

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
            self._on_settled()
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
