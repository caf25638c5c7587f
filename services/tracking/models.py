from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import UTCDateTime
from services.common.outbox import OutboxMixin


class Base(DeclarativeBase):
    pass


class Category(Base):
    __tablename__ = "categories"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Partner(Base):
    __tablename__ = "partners"
    __table_args__ = (Index("ix_partners_category_name", "category_id", "name"),)

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    category_id: Mapped[str] = mapped_column(ForeignKey("categories.slug"))
    description: Mapped[str] = mapped_column(Text, default="")
    site_url: Mapped[str] = mapped_column(String(500))
    terms_text: Mapped[str] = mapped_column(Text, default="")
    # The partner's search keys (services/tracking/search.py: names, aliases and slug folded to one
    # Latin spelling), one per line.
    search_text: Mapped[str] = mapped_column(String(400))
    # The operator's own services (music, tv…) are reported by billing under this code.
    service_code: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    # The current rule set (a copy of the latest row of partner_rule_sets).
    rule_version: Mapped[int] = mapped_column(Integer)
    rules_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PartnerRuleSet(Base):
    """Every version of every partner's terms; purchases point at the one they were computed with."""

    __tablename__ = "partner_rule_sets"

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.slug"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rules_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Click(Base):
    __tablename__ = "clicks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.slug"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Purchase(Base):
    __tablename__ = "purchases"
    __table_args__ = (
        # An order belongs to its shop: one purchase per (partner, order, part), whatever network
        # reports it. Shops number their orders independently, so the same order id at two shops is
        # two purchases. ("" is the partner of a report that names none and has no known click.)
        UniqueConstraint("partner_id", "order_id", "part_id", name="uq_purchases_partner_order_part"),
        Index("ix_purchases_user_time", "user_id", "created_at", "id"),
        Index("ix_purchases_status_confirm", "status", "confirm_time"),
        Index("ix_purchases_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: unattributed
    partner_id: Mapped[str] = mapped_column(String(64), default="")  # "" when nobody says which partner
    network: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(128))
    part_id: Mapped[str] = mapped_column(String(128), default="")
    click_id: Mapped[str] = mapped_column(String(64), default="")
    # "postback", "claim" or "activation".
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    cashback_kopecks: Mapped[int] = mapped_column(BigInteger)
    rule_version: Mapped[int] = mapped_column(Integer, default=0)
    decision_json: Mapped[str] = mapped_column(Text)
    # The facts the rules look at, kept to recompute on an amount correction or a claim.
    channel: Mapped[str] = mapped_column(String(8), default="WEB")
    customer_type: Mapped[str] = mapped_column(String(16), default="INDIVIDUAL")
    destination_domain: Mapped[str] = mapped_column(String(253), default="")
    other_loyalty_used: Mapped[bool] = mapped_column(Boolean, default=False)
    event_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirm_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    accrue_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The shop's event time of the newest report applied (None: no report said when).
    report_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The network's commission, where reported (Admitad's payment_sum); never the purchase amount.
    commission_kopecks: Mapped[int] = mapped_column(BigInteger, default=0)
    # Net cashback sent to the ledger so far, and how many ledger movements made it (their ids).
    credited_kopecks: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_count: Mapped[int] = mapped_column(Integer, default=0)


class PurchaseReport(Base):
    """Every report stored against a purchase: the database's memory of what was applied (a
    byte-identical replay is a duplicate whenever it comes, with Redis or without) and the
    purchase's history as its shop told it."""

    __tablename__ = "purchase_reports"
    __table_args__ = (Index("ix_purchase_reports_purchase", "purchase_id", "received_at"),)

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(String(36))
    postback_id: Mapped[str] = mapped_column(String(36), default="")
    status: Mapped[str] = mapped_column(String(16))  # the reported status (pending/approved/declined)
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    event_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # "APPLIED" or "SUPERSEDED" (older than the newest report, stored only).
    effect: Mapped[str] = mapped_column(String(16))


class ActivationReward(Base):
    """One reward per user, operator service and calendar month (Moscow time): subscribing again
    after unsubscribing earns nothing more that month."""

    __tablename__ = "activation_rewards"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-12"
    purchase_id: Mapped[str] = mapped_column(String(36))


class Postback(Base):
    """Every postback exactly as received, with what became of it (the audit)."""

    __tablename__ = "postbacks"
    __table_args__ = (Index("ix_postbacks_network_order", "network", "order_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    network: Mapped[str] = mapped_column(String(64))
    http_method: Mapped[str] = mapped_column(String(8))
    query_string: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers_json: Mapped[str] = mapped_column(Text)
    remote_address: Mapped[str] = mapped_column(String(128), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    # The error reason for refused postbacks, or what the postback changed.
    detail: Mapped[str] = mapped_column(String(200), default="")
    fingerprint: Mapped[str] = mapped_column(String(64), default="", index=True)
    order_id: Mapped[str] = mapped_column(String(128), default="")
    part_id: Mapped[str] = mapped_column(String(128), default="")
    purchase_id: Mapped[str] = mapped_column(String(36), default="")


class Claim(Base):
    __tablename__ = "claims"
    __table_args__ = (
        UniqueConstraint("user_id", "partner_id", "order_id", name="uq_claims_user_partner_order"),
        # An order pays once: at most one live (open or approved) claim per shop order, whoever files it.
        Index("uq_claims_partner_order_live", "partner_id", "order_id", unique=True,
              postgresql_where=text("status <> 'REJECTED'"), sqlite_where=text("status <> 'REJECTED'")),
        Index("ix_claims_user_time", "user_id", "created_at", "id"),
        Index("ix_claims_time", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.slug"))
    order_id: Mapped[str] = mapped_column(String(128))
    order_date: Mapped[str] = mapped_column(String(10))
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    comment: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str] = mapped_column(String(128), default="")
    purchase_id: Mapped[str] = mapped_column(String(36), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OutboxMessage(Base, OutboxMixin):
    __tablename__ = "outbox"
