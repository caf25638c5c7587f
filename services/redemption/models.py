from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import UTCDateTime
from services.common.outbox import OutboxMixin


class Base(DeclarativeBase):
    pass


class MobilePayment(Base):
    """Points → the user's phone account. `id` is also the ledger hold's suffix
    (`mobile-payment:<id>`) and billing's `topup_id`."""

    __tablename__ = "mobile_payments"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_mobile_payments_user_key"),
        Index("ix_mobile_payments_user_time", "user_id", "created_at", "id"),
        Index("ix_mobile_payments_due", "status", "next_check_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # While PROCESSING: when the reconciler may next take the payment over (a lease for whoever
    # is working on it now).
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(BigInteger, default=0)


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_certificates_user_key"),
        # One certificate per device sale: the database says so even under races.
        UniqueConstraint("store_id", "sale_id", name="uq_certificates_sale"),
        Index("ix_certificates_holder_time", "holder_user_id", "created_at", "id"),
        Index("ix_certificates_due", "status", "next_check_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Normalised code (no separators); unique, looked up at the store counter.
    code: Mapped[str] = mapped_column(String(32), unique=True)
    # Who ordered (and paid for) it; the idempotency key is theirs.
    user_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    holder_user_id: Mapped[str] = mapped_column(String(64))
    nominal: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Set when redeemed at a store.
    store_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sale_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    device_price: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    covered: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CertificateHolder(Base):
    """History of holders: one row per holding, the first for the buyer."""

    __tablename__ = "certificate_holders"
    __table_args__ = (Index("ix_certificate_holders_cert", "certificate_id", "since"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"))
    user_id: Mapped[str] = mapped_column(String(64))
    from_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxMessage(Base, OutboxMixin):
    __tablename__ = "outbox"
