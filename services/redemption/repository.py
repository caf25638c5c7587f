"""Persistence of payments and certificates behind a small interface."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption.domain import CertificateStatus, PaymentStatus
from services.redemption.models import Certificate, CertificateHolder, MobilePayment

VISIBLE_CERTIFICATE_STATES = (CertificateStatus.ACTIVE.value, CertificateStatus.REDEEMED.value)


class RedemptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # payments
    async def payment(self, payment_id: str, *, lock: bool = False) -> MobilePayment | None:
        stmt = select(MobilePayment).where(MobilePayment.id == payment_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).one_or_none()

    async def payment_by_key(self, user_id: str, key: str) -> MobilePayment | None:
        return (await self.session.scalars(select(MobilePayment).where(
            MobilePayment.user_id == user_id, MobilePayment.idempotency_key == key))).one_or_none()

    async def payments_of(self, user_id: str, limit: int, before: tuple[datetime, str] | None) -> list[MobilePayment]:
        stmt = select(MobilePayment).where(MobilePayment.user_id == user_id)
        if before is not None:
            stmt = stmt.where(tuple_(MobilePayment.created_at, MobilePayment.id) < tuple_(*before))
        stmt = stmt.order_by(MobilePayment.created_at.desc(), MobilePayment.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def claim_due_payments(self, now: datetime, limit: int) -> list[MobilePayment]:
        return list((await self.session.scalars(
            select(MobilePayment)
            .where(MobilePayment.status == PaymentStatus.PROCESSING.value, MobilePayment.next_check_at <= now)
            .order_by(MobilePayment.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )).all())

    # certificates
    async def certificate(self, certificate_id: str, *, lock: bool = False) -> Certificate | None:
        stmt = select(Certificate).where(Certificate.id == certificate_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).one_or_none()

    async def certificate_by_key(self, user_id: str, key: str) -> Certificate | None:
        return (await self.session.scalars(select(Certificate).where(
            Certificate.user_id == user_id, Certificate.idempotency_key == key))).one_or_none()

    async def certificate_by_code(self, code: str, *, lock: bool = False) -> Certificate | None:
        stmt = select(Certificate).where(Certificate.code == code)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).one_or_none()

    async def certificate_for_sale(self, store_id: str, sale_id: str) -> Certificate | None:
        return (await self.session.scalars(select(Certificate).where(
            Certificate.store_id == store_id, Certificate.sale_id == sale_id))).one_or_none()

    async def certificates_held(self, user_id: str, limit: int,
                                before: tuple[datetime, str] | None) -> list[Certificate]:
        stmt = select(Certificate).where(Certificate.holder_user_id == user_id,
                                         Certificate.status.in_(VISIBLE_CERTIFICATE_STATES))
        if before is not None:
            stmt = stmt.where(tuple_(Certificate.created_at, Certificate.id) < tuple_(*before))
        stmt = stmt.order_by(Certificate.created_at.desc(), Certificate.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def holders(self, certificate_id: str) -> list[CertificateHolder]:
        return list((await self.session.scalars(
            select(CertificateHolder).where(CertificateHolder.certificate_id == certificate_id)
            .order_by(CertificateHolder.since, CertificateHolder.id))).all())

    async def claim_due_certificates(self, now: datetime, limit: int) -> list[Certificate]:
        return list((await self.session.scalars(
            select(Certificate)
            .where(Certificate.status == CertificateStatus.ISSUING.value, Certificate.next_check_at <= now)
            .order_by(Certificate.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )).all())
