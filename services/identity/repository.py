"""Persistence of users, codes, tokens, keys and notifications."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.outbox import OutboxMixin
from services.identity.models import (
    Challenge,
    CodeTarget,
    DevMessage,
    Notification,
    RateCounter,
    RefreshToken,
    SigningKey,
    UsedAssertion,
    User,
)


class IdentityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _insert(self, model: type) -> object:
        dialect = self.session.bind.dialect.name
        return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)

    # users

    async def user(self, user_id: str, *, lock: bool = False) -> User | None:
        stmt = select(User).where(User.id == user_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def user_by_phone(self, phone: str) -> User | None:
        return (await self.session.scalars(select(User).where(User.phone == phone))).first()

    async def user_by_referral_code(self, code: str) -> User | None:
        return (await self.session.scalars(select(User).where(User.referral_code == code))).first()

    async def referral_code_taken(self, code: str) -> bool:
        return await self.user_by_referral_code(code) is not None

    def add(self, row: object) -> None:
        self.session.add(row)

    # codes

    async def lock_target(self, key: str) -> CodeTarget:
        """Creates the target if missing, then locks it (serialises starts and verifies per target)."""
        for _ in range(3):  # the clean-up job may delete an idle target between the two statements
            stmt = self._insert(CodeTarget).values(key=key, failures=0)  # type: ignore[attr-defined]
            await self.session.execute(stmt.on_conflict_do_nothing())
            row = (await self.session.scalars(
                select(CodeTarget).where(CodeTarget.key == key).with_for_update()
                .execution_options(populate_existing=True)
            )).first()
            if row is not None:
                return row
        raise RuntimeError(f"code target {key} vanished three times in a row")

    async def challenge(self, challenge_id: str, *, lock: bool = False) -> Challenge | None:
        stmt = select(Challenge).where(Challenge.id == challenge_id)
        if lock:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.scalars(stmt)).first()

    async def supersede_challenges(self, target_key: str, now: datetime) -> None:
        """A new code replaces the target's earlier ones: they expire now."""
        await self.session.execute(
            update(Challenge)
            .where(Challenge.target_key == target_key, Challenge.consumed_at.is_(None), Challenge.expires_at > now)
            .values(expires_at=now)
        )

    async def hit_counter(self, key: str, expires_at: datetime) -> int:
        """Adds one to a rate-limit counter (an upsert under the row lock) and answers its count.
        The key holds the window, so an old window's row is never reused; `purge_counters` tidies."""
        stmt = self._insert(RateCounter).values(key=key, count=1, expires_at=expires_at)  # type: ignore[attr-defined]
        stmt = stmt.on_conflict_do_update(index_elements=[RateCounter.key],
                                          set_={"count": RateCounter.count + 1}).returning(RateCounter.count)
        return int((await self.session.execute(stmt)).scalar_one())

    async def purge_counters(self, now: datetime, limit: int = 1000) -> int:
        return await self._purge(RateCounter, RateCounter.key, RateCounter.expires_at <= now, limit)

    async def purge_challenges(self, before: datetime, limit: int = 1000) -> int:
        return await self._purge(Challenge, Challenge.id, Challenge.expires_at < before, limit)

    async def purge_idle_targets(self, before: datetime, now: datetime, limit: int = 1000) -> int:
        """Targets with no code sent since `before` and no lock in force: their cooldown is long
        over and (their codes having expired) their failure count no longer matters."""
        idle = ((CodeTarget.last_sent_at.is_(None) | (CodeTarget.last_sent_at < before))
                & (CodeTarget.locked_until.is_(None) | (CodeTarget.locked_until < now)))
        return await self._purge(CodeTarget, CodeTarget.key, idle, limit)

    async def purge_used_assertions(self, now: datetime, limit: int = 1000) -> int:
        return await self._purge(UsedAssertion, UsedAssertion.id, UsedAssertion.expires_at < now, limit)

    async def purge_sent_outbox(self, model: type[OutboxMixin], before: datetime, limit: int = 1000) -> int:
        return await self._purge(model, model.id, model.sent_at < before, limit)

    async def _purge(self, model: type, column: object, condition: object, limit: int) -> int:
        """Deletes up to `limit` rows matching `condition`. Rows another replica is touching are
        skipped (FOR UPDATE SKIP LOCKED on PostgreSQL), so concurrent clean-ups never wait on or
        deadlock with each other or with live requests."""
        keys = (await self.session.scalars(
            select(column).where(condition).limit(limit).with_for_update(skip_locked=True))).all()  # type: ignore
        if keys:
            await self.session.execute(delete(model).where(column.in_(keys)))  # type: ignore[attr-defined]
        return len(keys)

    # operator assertions

    async def spend_assertion(self, assertion_id: str, expires_at: datetime) -> bool:
        """Records an assertion as used; False when it already was (concurrent uses: one wins)."""
        stmt = self._insert(UsedAssertion).values(id=assertion_id, expires_at=expires_at)  # type: ignore
        result = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=[UsedAssertion.id]).returning(UsedAssertion.id))
        return result.first() is not None

    # refresh tokens

    async def refresh_token_by_hash(self, token_hash: str) -> RefreshToken | None:
        return (await self.session.scalars(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
            .execution_options(populate_existing=True)
        )).first()

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    # signing keys

    async def active_signing_keys(self) -> list[SigningKey]:
        """Unretired keys, newest first."""
        return list((await self.session.scalars(
            select(SigningKey).where(SigningKey.retired_at.is_(None)).order_by(SigningKey.generation.desc())
        )).all())

    async def signing_key(self, kid: str, *, lock: bool = False) -> SigningKey | None:
        stmt = select(SigningKey).where(SigningKey.kid == kid)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def last_key_generation(self) -> int:
        return int((await self.session.scalar(select(func.max(SigningKey.generation)))) or 0)

    async def retire_signing_keys(self, kids: list[str], now: datetime) -> None:
        await self.session.execute(
            update(SigningKey).where(SigningKey.kid.in_(kids), SigningKey.retired_at.is_(None)).values(retired_at=now))

    # notifications

    async def notifications_by_key(self, idempotency_key: str) -> list[Notification]:
        return list((await self.session.scalars(
            select(Notification).where(Notification.idempotency_key == idempotency_key)
        )).all())

    async def notification(self, notification_id: str) -> Notification | None:
        return await self.session.get(Notification, notification_id)

    async def notifications(self, user_id: str, limit: int,
                            before: tuple[datetime, str] | None) -> list[Notification]:
        stmt = select(Notification).where(Notification.user_id == user_id)
        if before is not None:
            stmt = stmt.where(tuple_(Notification.created_at, Notification.id) < tuple_(*before))
        stmt = stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    # dev sink

    async def add_dev_message(self, values: dict[str, object]) -> None:
        stmt = self._insert(DevMessage).values(**values)  # type: ignore[attr-defined]
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=[DevMessage.key]))

    async def dev_messages(self, recipient: str, limit: int) -> list[DevMessage]:
        stmt = select(DevMessage)
        if recipient:
            stmt = stmt.where(DevMessage.recipient == recipient)
        stmt = stmt.order_by(DevMessage.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())
