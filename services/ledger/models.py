from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import UTCDateTime
from services.ledger.domain import MAX_TRANSFER_ID_LENGTH, REPAY_SUFFIX

TRANSFER_ID_COLUMN_LENGTH = MAX_TRANSFER_ID_LENGTH + len(REPAY_SUFFIX)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    # Every transfer rewrites its accounts' counters: free room in each page lets PostgreSQL keep the
    # new row version on the same page (a HOT update, no index entry to add), which halves the cost
    # of a batch's account UPDATE (revision 8d2e4f6a9c13).
    __table_args__ = {"postgresql_with": {"fillfactor": 70}}

    # "user:<user_id>" or "system:<NAME>".
    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    # A user's debt: what reversals could not take from the points (owed to system:DEBTS), repaid
    # first by the user's next credits. On the row that every use case already locks and reads,
    # so a user without debt costs nothing extra. Always 0 for system accounts.
    debt_kopecks: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Transfer(Base):
    __tablename__ = "transfers"
    __table_args__ = (
        Index("ix_transfers_debit_time", "debit_account_id", "created_at", "id"),
        Index("ix_transfers_credit_time", "credit_account_id", "created_at", "id"),
        # Only pending holds are indexed (what the expiry job scans, in timeout order): posted
        # transfers, nearly all of them, skip this index on insert.
        Index("ix_transfers_pending_timeout", "timeout_at",
              postgresql_where=text("state = 'PENDING'"), sqlite_where=text("state = 'PENDING'")),
    )

    # A caller's id (at most domain.MAX_TRANSFER_ID_LENGTH, 128) or one the ledger derives from it
    # (`<reversal_id>:debt`, `<transfer_id>:repay`).
    id: Mapped[str] = mapped_column(String(TRANSFER_ID_COLUMN_LENGTH), primary_key=True)
    # Account keys, deliberately without foreign keys to accounts (dropped in revision 3c1d0a5e7b21):
    # the two referential checks cost two index lookups per inserted transfer, about half of a
    # batch insert, and guard nothing the code does not already guarantee. Every use case that
    # inserts a transfer first creates its accounts and locks the user accounts in the same
    # transaction (LedgerRepository.lock_accounts fails if one is missing), and ends with the
    # UPDATE of the system accounts' counters, which fails if a system account row is missing;
    # accounts are never deleted. The audit reports any transfer naming a missing account.
    debit_account_id: Mapped[str] = mapped_column(String(160))
    credit_account_id: Mapped[str] = mapped_column(String(160))
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(200), default="")
    pending: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16))
    timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Reversal(Base):
    """A ReverseCredit as asked and answered: its idempotency record (a replay compares the fields
    and answers the same figures). Its money moved in the transfers `<id>` (taken, user → system)
    and `<id>:debt` (the shortfall, DEBTS → system)."""

    __tablename__ = "reversals"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    system: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(200), default="")
    taken: Mapped[int] = mapped_column(BigInteger)
    debt: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
