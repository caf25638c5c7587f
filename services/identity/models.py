from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import UTCDateTime
from services.common.outbox import OutboxMixin


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    operator: Mapped[str] = mapped_column(String(64), default="")
    is_operator_subscriber: Mapped[bool] = mapped_column(Boolean, default=False)
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    referrer_user_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    spending_goal: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CodeTarget(Base):
    """Per phone ("phone:+7...") or per user's e-mail ("email:<user_id>"): when the last code was
    sent (resend cooldown), wrong codes across all its codes, and a lock after too many. Locked
    FOR UPDATE by every start and verify, which serialises them per target.

    A phone's wrong codes are also counted per source ("phone:+7...@<client address>"): a source that
    guesses too often is locked out of that number (`locked_until` of its row), never the number
    itself; the number's own row counts every source's wrong codes against the guess budget, and
    past it every code of the number gets one try only until `strict_until`."""

    __tablename__ = "code_targets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    strict_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Challenge(Base):
    __tablename__ = "challenges"
    __table_args__ = (Index("ix_challenges_target", "target_key", "expires_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(8))
    target_key: Mapped[str] = mapped_column(String(64))
    # The phone (E.164) or the e-mail address the code was sent to.
    destination: Mapped[str] = mapped_column(String(320))
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SigningKey(Base):
    """Access-token signing keys, shared by every replica. Every unretired key is published; the
    newest one published long enough signs (see `tokens.signing_key`). `generation` is unique, so
    replicas racing to add the next key make one key, not two."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, unique=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_key_pem: Mapped[str] = mapped_column(Text)
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class UsedAssertion(Base):
    """Operator SSO assertions already spent (an assertion signs in once), kept until they expire."""

    __tablename__ = "used_assertions"

    # sha256 of "<issuer>:<jti>".
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Notification(Base):
    """One row per channel of a notification; the SMS row's id is the notification id."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("idempotency_key", "channel", name="uq_notifications_key_channel"),
        Index("ix_notifications_user_time", "user_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str] = mapped_column(String(36))
    template: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OutboxMessage(Base, OutboxMixin):
    __tablename__ = "outbox"


class DevMessage(Base):
    """Dev only: what the SMS and e-mail adapters would have sent. One row per outbox key."""

    __tablename__ = "dev_messages"
    __table_args__ = (Index("ix_dev_messages_recipient_time", "recipient", "created_at"),)

    # Increasing, so that "newest first" holds even for messages sent in the same instant.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class RateCounter(Base):
    """Rate-limit counters when Redis is absent: one row per (limit, value, window)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
