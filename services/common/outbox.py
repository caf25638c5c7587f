"""Transactional outbox: a cross-service effect (credit cashback, send a notification) is written
as a row in the caller's own transaction, then relayed with retries. The callee deduplicates by
the row's `key`, so at-least-once delivery gives an exactly-once effect.

Claiming is lease-based and safe with several replicas: rows are picked with
`FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serialises writers anyway), their `available_at` is
pushed past a lease, and the claim commits before the handler runs, so no transaction stays open
across a network call. A replica that dies mid-delivery leaves the row to be picked up again once
the lease runs out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.common.clock import Clock
from services.common.db import Database, UTCDateTime

log = logging.getLogger("cashback.outbox")

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]


class PermanentFailure(Exception):
    """A handler's verdict that retrying cannot help; the row is parked with the error."""


class OutboxMixin:
    """Columns of an outbox table; each service declares `class OutboxMessage(Base, OutboxMixin)`."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    # The idempotency key the callee receives; unique, so one effect is enqueued once.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    parked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def enqueue(session: AsyncSession, model: type[OutboxMixin], *, topic: str, key: str,
            payload: dict[str, Any], now: datetime) -> None:
    """Adds a message to the caller's transaction; it is relayed only if that transaction commits."""
    columns: dict[str, Any] = {"id": str(uuid.uuid4()), "topic": topic, "key": key, "payload": json.dumps(payload),
                               "created_at": now, "available_at": now, "attempts": 0}
    session.add(model(**columns))


def backoff(attempts: int, *, base: float = 0.5, cap: float = 300.0) -> timedelta:
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


class OutboxRelay:
    def __init__(self, db: Database, model: type[OutboxMixin], handlers: dict[str, Handler], clock: Clock,
                 *, batch_size: int = 100, poll_interval: float = 0.5, lease: timedelta = timedelta(seconds=30),
                 concurrency: int = 16, max_attempts: int = 50) -> None:
        self._db = db
        self._model = model
        self._handlers = handlers
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._lease = lease
        self._semaphore = asyncio.Semaphore(concurrency)
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Call after committing a message to relay it now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            handled = await self.run_once()
            if handled == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                except TimeoutError:
                    pass

    async def run_once(self) -> int:
        model = self._model
        now = self._clock.now()
        async with self._db.transaction() as session:
            rows = (await session.scalars(
                select(model)
                .where(model.sent_at.is_(None), model.parked_at.is_(None), model.available_at <= now)
                .order_by(model.available_at)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )).all()
            claimed = []
            for row in rows:
                row.available_at = now + self._lease
                claimed.append((row.id, row.topic, row.key, json.loads(row.payload), row.attempts))
        if claimed:
            await asyncio.gather(*(self._deliver(*item) for item in claimed))
        return len(claimed)

    async def _deliver(self, row_id: str, topic: str, key: str, payload: dict[str, Any], attempts: int) -> None:
        async with self._semaphore:
            handler = self._handlers.get(topic)
            error: str | None = None
            permanent = False
            try:
                if handler is None:
                    raise PermanentFailure(f"no handler for topic {topic!r}")
                await handler(key, payload)
            except PermanentFailure as exc:
                error, permanent = str(exc), True
            except Exception as exc:  # noqa: BLE001 - every failure is retried and recorded
                error = f"{type(exc).__name__}: {exc}"
            now = self._clock.now()
            async with self._db.transaction() as session:
                row = await session.get(self._model, row_id)
                if row is None or row.sent_at is not None:
                    return
                if error is None:
                    row.sent_at = now
                    log.info("outbox %s %s delivered", topic, key)
                    return
                row.attempts = attempts + 1
                row.last_error = error[:2000]
                if permanent or row.attempts >= self._max_attempts:
                    row.parked_at = now
                    log.error("outbox %s %s parked after %d attempts: %s", topic, key, row.attempts, error)
                else:
                    row.available_at = now + backoff(row.attempts)
                    log.warning("outbox %s %s attempt %d failed: %s", topic, key, row.attempts, error)
