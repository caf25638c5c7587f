"""Tracking use cases: each takes one transaction, calls the rules, commits. A postback's journey
is in services/tracking/ingestion.py; what a purchase owes the ledger, in crediting.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.db import Database
from services.common.outbox import OutboxRelay
from services.common.pagination import (
    decode_offset,
    encode_offset,
    page_size,
)
from services.tracking import catalogue as catalogue_file
from services.tracking import domain, search
from services.tracking.activations import Activations
from services.tracking.audit import AuditSpool
from services.tracking.claims import Claims
from services.tracking.domain import Decision, PurchaseFacts
from services.tracking.ingestion import Ingestion, RefusalBudget
from services.tracking.lifecycle import Lifecycle
from services.tracking.models import Category, Click, Partner, PartnerRuleSet
from services.tracking.postbacks import NetworkConfig
from services.tracking.records import rules_of
from services.tracking.repository import TrackingRepository
from services.tracking.upstreams import IdentityClient

log = logging.getLogger("cashback.tracking")



def _with_sub_id(site_url: str, click_id: str) -> str:
    parts = urlsplit(site_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("sub_id", click_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class Tracking:
    """Tracking's use cases, one object per area (the servicer routes to them): the catalogue and
    clicks here, postback ingestion (ingestion.py), the purchase lifecycle (lifecycle.py), the
    operator's services (activations.py) and claims (claims.py)."""

    def __init__(self, db: Database, clock: Clock, *, identity: IdentityClient, networks: dict[str, NetworkConfig],
                 spool: AuditSpool, refusals: RefusalBudget, relay: OutboxRelay | None = None,
                 accrual_delay: timedelta = timedelta(days=1), pending_expiry: timedelta = timedelta(days=90),
                 sweeps: bool = False) -> None:
        self._db = db
        self._clock = clock
        self._identity = identity
        self._relay = relay
        self.work_due = asyncio.Event()  # set when a purchase is confirmed: the accrual job looks now
        self.ingestion = Ingestion(db, clock, networks=networks, spool=spool, refusals=refusals,
                                   on_confirmed=self.work_due.set,
                                   on_settled=self._wake_relay, sweeps=sweeps)
        self.lifecycle = Lifecycle(db, clock, accrual_delay=accrual_delay, pending_expiry=pending_expiry,
                                   on_settled=self._wake_relay, sweeps=sweeps)
        self.activations = Activations(db, clock, identity=identity, on_confirmed=self.work_due.set)
        self.claims = Claims(db, clock, on_confirmed=self.work_due.set)

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
