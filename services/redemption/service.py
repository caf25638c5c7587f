"""Redemption use cases.

Every money step is written down before it is taken and is idempotent when taken again, so a
crash at any point leaves work that the reconciler finishes:

- mobile payment: row PROCESSING (commit) → ledger hold `mobile-payment:<id>` → billing top-up
  (topup_id = payment id) → post the hold (COMPLETED) or, only when billing clearly refuses, void it
  (FAILED). No clear answer from billing leaves the payment PROCESSING; the reconciler asks billing
  again later. Billing dedups by topup_id, so nothing is ever topped up twice.
- certificate: row ISSUING (commit) → ledger transfer `certificate:<id>` → ACTIVE. The reconciler
  finishes ISSUING rows by replaying the same transfer: the points leave and the certificate
  exists, both or neither.

Whoever works on a payment or certificate holds a lease (`next_check_at`); the reconciler claims
only rows whose lease ran out, with `FOR UPDATE SKIP LOCKED`, so several replicas share the work.
No transaction stays open across a network call.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.db import Database
from services.common.outbox import backoff, enqueue
from services.common.pagination import decode_cursor, keyset_page, page_size
from services.redemption import domain
from services.redemption.billing import Billing, TopupAnswer, TopupState
from services.redemption.domain import CertificateStatus, Coverage, PaymentStatus
from services.redemption.models import Certificate, CertificateHolder, MobilePayment, OutboxMessage
from services.redemption.repository import VISIBLE_CERTIFICATE_STATES, RedemptionRepository
from services.redemption.upstreams import IdentityClient, LedgerClient, PhoneInvalid, UpstreamUnavailable

log = logging.getLogger("cashback.redemption")

NOTIFICATION_TOPIC = "notification"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
MAX_CODE_ATTEMPTS = 3


class CreditNotFound(domain.NotFound):
    reason = "CREDIT_NOT_FOUND"


class CreditMismatch(domain.InvalidArgument):
    reason = "CREDIT_MISMATCH"


def hold_id(payment_id: str) -> str:
    return f"mobile-payment:{payment_id}"


def certificate_transfer_id(certificate_id: str) -> str:
    return f"certificate:{certificate_id}"


class Redemption:
    def __init__(self, db: Database, clock: Clock, ledger: LedgerClient, identity: IdentityClient,
                 billing: Billing, *, hold_timeout_seconds: int, claim_lease_seconds: float,
                 reconcile_interval_seconds: float, on_enqueued: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._clock = clock
        self._ledger = ledger
        self._identity = identity
        self._billing = billing
        self._hold_timeout = hold_timeout_seconds
        self._lease = timedelta(seconds=claim_lease_seconds)
        self._interval = reconcile_interval_seconds
        self._on_enqueued = on_enqueued

    # --- mobile payments ------------------------------------------------------------------------

    async def create_mobile_payment(self, user_id: str, key: str, amount: int) -> tuple[MobilePayment, bool]:
        domain.check_user_and_key(user_id, key)
        domain.check_payment_amount(amount)
        payment, existed = await self._pay(user_id, key, amount)
        if not existed and payment.status == PaymentStatus.FAILED and payment.failure_reason == INSUFFICIENT_FUNDS:
            raise domain.InsufficientFunds("not enough points for this payment", payment_id=payment.id)
        return payment, existed

    async def _pay(self, user_id: str, key: str, amount: int) -> tuple[MobilePayment, bool]:
        async with self._db.sessions() as session:
            existing = await RedemptionRepository(session).payment_by_key(user_id, key)
        if existing is None:
            user = await self._identity.get_user(user_id)
            if not await self._billing.is_subscriber(user.phone):
                raise domain.PhoneNotOperator("points pay the operator's own services only; other operators' "
                                              "subscribers spend them on certificates")
            now = self._clock.now()
            row = MobilePayment(id=str(uuid.uuid4()), user_id=user_id, idempotency_key=key, phone=user.phone,
                                amount=amount, status=PaymentStatus.PROCESSING.value, failure_reason="",
                                created_at=now, next_check_at=now + self._lease, attempts=0)
            try:
                async with self._db.transaction() as session:
                    session.add(row)
            except IntegrityError:  # the same key raced in from a concurrent request
                async with self._db.sessions() as session:
                    existing = await RedemptionRepository(session).payment_by_key(user_id, key)
                if existing is None:
                    raise
            else:
                log.info("mobile payment %s: %d kopecks for user %s", row.id, amount, user_id)
                return await self._drive_payment(row.id, reconciling=False), False
        domain.check_same_request(existing.amount, amount, "mobile payment")
        return existing, True

    async def _drive_payment(self, payment_id: str, *, reconciling: bool) -> MobilePayment:
        """Takes a PROCESSING payment as far as it can go. Every step is idempotent."""
        payment = await self._load_payment(payment_id)
        if payment.status != PaymentStatus.PROCESSING:
            return payment
        transfer_id = hold_id(payment.id)
        try:
            hold = await self._ledger.hold_for_mobile_payment(transfer_id, payment.user_id, payment.amount,
                                                              reference=payment.id, timeout_seconds=self._hold_timeout)
        except domain.InsufficientFunds:
            return await self._finish_payment(payment.id, PaymentStatus.FAILED, INSUFFICIENT_FUNDS)
        except UpstreamUnavailable:
            return await self._payment_later(payment.id)
        if hold == "POSTED":  # settled before a crash, not yet written down
            return await self._finish_payment(payment.id, PaymentStatus.COMPLETED)
        if hold in ("VOIDED", "EXPIRED"):
            return await self._settle_released_hold(payment, hold)

        if reconciling:
            answer = await self._billing.status(payment.id)
            if answer.state == TopupState.NOT_FOUND:
                # Billing never saw this top-up (a crash before sending it, or a lost request). We send
                # it again rather than void: billing is idempotent by topup_id, so a first request still
                # on its way cannot make a second top-up, whereas voiding now could race with that
                # request landing later and leave a top-up with no points taken. The hold is PENDING
                # (just checked), so the points are there to be posted.
                answer = await self._billing.top_up(payment.id, payment.phone, payment.amount)
        else:
            answer = await self._billing.top_up(payment.id, payment.phone, payment.amount)
        return await self._apply_billing_answer(payment, answer)

    async def _apply_billing_answer(self, payment: MobilePayment, answer: TopupAnswer) -> MobilePayment:
        transfer_id = hold_id(payment.id)
        try:
            if answer.state == TopupState.APPLIED:
                state = await self._ledger.post(transfer_id)
                if state == "POSTED":
                    return await self._finish_payment(payment.id, PaymentStatus.COMPLETED)
                log.error("payment %s: billing applied the top-up but the hold is %s", payment.id, state)
                return await self._capture_late(payment)
            if answer.state == TopupState.REFUSED:
                state = await self._ledger.void(transfer_id)
                if state == "POSTED":  # cannot happen: we post only after billing applied
                    log.error("payment %s: billing refused but the hold was posted", payment.id)
                    return await self._finish_payment(payment.id, PaymentStatus.COMPLETED)
                return await self._finish_payment(payment.id, PaymentStatus.FAILED, answer.reason)
        except UpstreamUnavailable:
            return await self._payment_later(payment.id)
        log.info("payment %s: billing gave no clear answer (%s); settling later", payment.id, answer.reason)
        return await self._payment_later(payment.id)

    async def _settle_released_hold(self, payment: MobilePayment, hold: str) -> MobilePayment:
        """The hold is voided (only ever after billing refused) or expired (billing was silent for
        longer than the hold's lifetime). Ask billing what happened; never send a top-up now."""
        answer = await self._billing.status(payment.id)
        if answer.state == TopupState.APPLIED:
            log.error("payment %s: billing applied the top-up after the hold was %s", payment.id, hold)
            return await self._capture_late(payment)
        if answer.state == TopupState.UNKNOWN:
            return await self._payment_later(payment.id)
        reason = answer.reason if answer.state == TopupState.REFUSED else "billing did not confirm the top-up in time"
        return await self._finish_payment(payment.id, PaymentStatus.FAILED, reason)

    async def _capture_late(self, payment: MobilePayment) -> MobilePayment:
        """Billing applied a top-up whose hold is gone: take the points with a posted transfer."""
        try:
            await self._ledger.capture_mobile_payment(f"{hold_id(payment.id)}:late", payment.user_id, payment.amount,
                                                      reference=payment.id)
        except domain.InsufficientFunds:
            log.error("payment %s: top-up applied but the points are already spent; needs a person", payment.id)
        except UpstreamUnavailable:
            return await self._payment_later(payment.id)
        return await self._finish_payment(payment.id, PaymentStatus.COMPLETED)

    async def _load_payment(self, payment_id: str) -> MobilePayment:
        async with self._db.sessions() as session:
            payment = await RedemptionRepository(session).payment(payment_id)
        if payment is None:
            raise domain.PaymentNotFound(f"no payment {payment_id}")
        return payment

    async def _finish_payment(self, payment_id: str, status: PaymentStatus, reason: str = "") -> MobilePayment:
        enqueued = False
        async with self._db.transaction() as session:
            payment = await RedemptionRepository(session).payment(payment_id, lock=True)
            assert payment is not None
            if payment.status != PaymentStatus.PROCESSING:
                return payment
            now = self._clock.now()
            payment.status, payment.failure_reason = status.value, reason
            payment.completed_at, payment.next_check_at = now, None
            if status == PaymentStatus.COMPLETED:
                enqueue(session, OutboxMessage, topic=NOTIFICATION_TOPIC, key=f"mobile-payment-completed:{payment.id}",
                        payload={"user_id": payment.user_id, "template": "mobile_payment_completed",
                                 "params": {"amount_kopecks": str(payment.amount)}}, now=now)
                enqueued = True
        log.info("payment %s %s%s", payment_id, status.value.lower(), f": {reason}" if reason else "")
        if enqueued:
            self._on_enqueued()
        return payment

    async def _payment_later(self, payment_id: str) -> MobilePayment:
        async with self._db.transaction() as session:
            payment = await RedemptionRepository(session).payment(payment_id, lock=True)
            assert payment is not None
            if payment.status == PaymentStatus.PROCESSING:
                payment.next_check_at = self._clock.now() + backoff(payment.attempts, base=self._interval)
        return payment

    async def list_mobile_payments(self, user_id: str, size: int, token: str) -> tuple[list[MobilePayment], str]:
        if not user_id:
            raise domain.UserIdRequired("user_id is required")
        limit = page_size(size)
        async with self._db.sessions() as session:
            rows = await RedemptionRepository(session).payments_of(user_id, limit + 1, decode_cursor(token))
        return keyset_page(rows, limit)

    async def get_mobile_payment(self, user_id: str, payment_id: str) -> MobilePayment:
        async with self._db.sessions() as session:
            payment = await RedemptionRepository(session).payment(payment_id)
        if payment is None or not user_id or payment.user_id != user_id:
            raise domain.PaymentNotFound(f"no payment {payment_id}")
        return payment

    # --- certificates ---------------------------------------------------------------------------

    async def order_certificate(self, user_id: str, key: str, nominal: int) -> tuple[Certificate, bool]:
        domain.check_user_and_key(user_id, key)
        domain.check_nominal(nominal)
        for _ in range(MAX_CODE_ATTEMPTS):
            async with self._db.sessions() as session:
                existing = await RedemptionRepository(session).certificate_by_key(user_id, key)
            if existing is not None:
                domain.check_same_request(existing.nominal, nominal, "certificate")
                if existing.status in VISIBLE_CERTIFICATE_STATES:
                    return existing, True
                existed = existing.status == CertificateStatus.ISSUING
                if existing.status == CertificateStatus.FAILED:  # a retry after "not enough points"
                    await self._reopen_certificate(existing.id)
                return await self._drive_certificate(existing.id, raise_errors=True), existed
            now = self._clock.now()
            cert = Certificate(id=str(uuid.uuid4()), code=domain.new_certificate_code(), user_id=user_id,
                               idempotency_key=key, holder_user_id=user_id, nominal=nominal,
                               status=CertificateStatus.ISSUING.value, created_at=now,
                               next_check_at=now + self._lease)
            try:
                async with self._db.transaction() as session:
                    session.add(cert)
                    await session.flush()
                    session.add(CertificateHolder(id=str(uuid.uuid4()), certificate_id=cert.id, user_id=user_id,
                                                  from_user_id=None, since=now))
            except IntegrityError:
                continue  # the same key raced in (read it above), or, unbelievably, a code collision
            log.info("certificate %s: %d kopecks for user %s", cert.id, nominal, user_id)
            return await self._drive_certificate(cert.id, raise_errors=True), False
        raise RuntimeError("could not store the certificate")

    async def _drive_certificate(self, certificate_id: str, *, raise_errors: bool) -> Certificate:
        async with self._db.sessions() as session:
            cert = await RedemptionRepository(session).certificate(certificate_id)
        assert cert is not None
        if cert.status not in (CertificateStatus.ISSUING, CertificateStatus.FAILED):
            return cert
        try:
            await self._ledger.pay_for_certificate(certificate_transfer_id(cert.id), cert.user_id, cert.nominal,
                                                   reference=cert.id)
        except domain.InsufficientFunds:
            await self._set_certificate_failed(cert.id)
            if raise_errors:
                raise
            return cert
        except UpstreamUnavailable:
            await self._certificate_later(cert.id)
            if raise_errors:
                raise
            return cert
        return await self._activate_certificate(cert.id)

    async def _activate_certificate(self, certificate_id: str) -> Certificate:
        # The points have left: the certificate exists, whatever the row said (even FAILED, should an
        # earlier attempt have been refused while this one was on its way).
        async with self._db.transaction() as session:
            cert = await RedemptionRepository(session).certificate(certificate_id, lock=True)
            assert cert is not None
            if cert.status not in (CertificateStatus.ISSUING, CertificateStatus.FAILED):
                return cert
            now = self._clock.now()
            cert.status, cert.issued_at, cert.next_check_at = CertificateStatus.ACTIVE.value, now, None
            enqueue(session, OutboxMessage, topic=NOTIFICATION_TOPIC, key=f"certificate-issued:{cert.id}",
                    payload={"user_id": cert.user_id, "template": "certificate_issued",
                             "params": {"nominal_kopecks": str(cert.nominal)}}, now=now)
        log.info("certificate %s issued", certificate_id)
        self._on_enqueued()
        return cert

    async def _set_certificate_failed(self, certificate_id: str) -> None:
        async with self._db.transaction() as session:
            cert = await RedemptionRepository(session).certificate(certificate_id, lock=True)
            if cert is not None and cert.status == CertificateStatus.ISSUING:
                cert.status, cert.next_check_at = CertificateStatus.FAILED.value, None

    async def _reopen_certificate(self, certificate_id: str) -> None:
        async with self._db.transaction() as session:
            cert = await RedemptionRepository(session).certificate(certificate_id, lock=True)
            if cert is not None and cert.status == CertificateStatus.FAILED:
                cert.status = CertificateStatus.ISSUING.value
                cert.next_check_at = self._clock.now() + self._lease

    async def _certificate_later(self, certificate_id: str) -> None:
        async with self._db.transaction() as session:
            cert = await RedemptionRepository(session).certificate(certificate_id, lock=True)
            if cert is not None and cert.status == CertificateStatus.ISSUING:
                cert.next_check_at = self._clock.now() + timedelta(seconds=self._interval)

    async def list_certificates(self, user_id: str, size: int, token: str) -> tuple[list[Certificate], str]:
        if not user_id:
            raise domain.UserIdRequired("user_id is required")
        limit = page_size(size)
        async with self._db.sessions() as session:
            rows = await RedemptionRepository(session).certificates_held(user_id, limit + 1, decode_cursor(token))
        return keyset_page(rows, limit)

    async def transfer_certificate(self, user_id: str, certificate_id: str, to_phone: str) -> Certificate:
        """Hands the certificate over as a bearer instrument: the recipient holds it under a new code
        and the old code stops working in the same transaction."""
        if not user_id:
            raise domain.UserIdRequired("user_id is required")
        async with self._db.sessions() as session:
            _check_holder(await RedemptionRepository(session).certificate(certificate_id), user_id, certificate_id)
        recipient = await self._identity.find_by_phone(to_phone)  # PhoneInvalid: INVALID_ARGUMENT
        if recipient is None:
            raise domain.RecipientNotFound("nobody with this phone number takes part in the program")
        if recipient.user_id == user_id:
            raise domain.RecipientIsHolder("the certificate is already yours")
        async with self._db.transaction() as session:
            repo = RedemptionRepository(session)
            cert = _check_holder(await repo.certificate(certificate_id, lock=True), user_id, certificate_id)
            now = self._clock.now()
            cert.holder_user_id, cert.code = recipient.user_id, domain.new_certificate_code()
            session.add(CertificateHolder(id=str(uuid.uuid4()), certificate_id=cert.id, user_id=recipient.user_id,
                                          from_user_id=user_id, since=now))
        log.info("certificate %s handed from %s to %s under a new code", certificate_id, user_id, recipient.user_id)
        return cert

    async def certificate_history(self, user_id: str, certificate_id: str) -> list[domain.CertificateEvent]:
        """Issued, handed over, redeemed: for the current holder only."""
        async with self._db.sessions() as session:
            repo = RedemptionRepository(session)
            cert = await repo.certificate(certificate_id)
            if (cert is None or not user_id or cert.holder_user_id != user_id
                    or cert.status not in VISIBLE_CERTIFICATE_STATES):
                raise domain.CertificateNotFound(f"no certificate {certificate_id}")
            holders = await repo.holders(certificate_id)
        return domain.certificate_events(cert.user_id, cert.issued_at or cert.created_at,
                                         [(h.from_user_id, h.user_id, h.since) for h in holders if h.from_user_id],
                                         cert.store_id, cert.redeemed_at)

    async def redeem_certificate(self, store_id: str, raw_code: str, sale_id: str, device_price: int) -> Coverage:
        """Applies a certificate to a device sale, once. The same store asking again with the same
        code, sale and price (a retry after a lost answer) gets the same answer."""
        code = domain.normalize_code(raw_code)  # a mistyped code is refused before any lookup
        domain.check_sale(store_id, sale_id, device_price)
        try:
            async with self._db.transaction() as session:
                repo = RedemptionRepository(session)
                cert = await repo.certificate_by_code(code, lock=True)
                if cert is None or cert.status not in VISIBLE_CERTIFICATE_STATES:
                    raise domain.CertificateNotFound("no certificate with this code")
                if cert.status == CertificateStatus.REDEEMED:
                    if (cert.store_id, cert.sale_id, cert.device_price) == (store_id, sale_id, device_price):
                        # The store asking again about the same sale (a lost answer): the same answer.
                        assert cert.covered is not None
                        log.info("certificate %s: store %s repeated sale %s", cert.id, store_id, sale_id)
                        return domain.recorded_coverage(cert.nominal, device_price, cert.covered)
                    raise domain.CertificateRedeemed("this certificate has already been used")
                if await repo.certificate_for_sale(store_id, sale_id) is not None:
                    raise domain.SaleAlreadyHasCertificate("this sale already has a certificate applied")
                result = domain.coverage(cert.nominal, device_price)
                cert.status = CertificateStatus.REDEEMED.value
                cert.store_id, cert.sale_id, cert.device_price = store_id, sale_id, device_price
                cert.covered, cert.redeemed_at = result.covered_kopecks, self._clock.now()
                await session.flush()
        except IntegrityError as exc:  # another certificate took the sale at the same moment
            raise domain.SaleAlreadyHasCertificate("this sale already has a certificate applied") from exc
        log.info("certificate %s redeemed at %s sale %s: covered %d, to pay %d, forfeited %d", cert.id, store_id,
                 sale_id, result.covered_kopecks, result.to_pay_kopecks, result.forfeited_kopecks)
        return result

    # --- USSD and sweep -------------------------------------------------------------------------

    async def answer_ussd(self, msisdn: str, request: str) -> str:
        if domain.normalize_ussd_request(request) != domain.USSD_BALANCE_REQUEST:
            return domain.USSD_UNKNOWN_REQUEST
        try:
            user = await self._identity.find_by_phone(domain.ussd_phone(msisdn))
            if user is None:
                return domain.USSD_UNKNOWN_NUMBER
            posted, available = await self._ledger.balance(user.user_id)
        except PhoneInvalid:
            return domain.USSD_UNKNOWN_NUMBER
        except UpstreamUnavailable:
            return domain.USSD_UNAVAILABLE
        return domain.ussd_balance_text(posted, available)

    async def sweep_credit(self, user_id: str, credit_transfer_id: str, amount: int) -> str:
        """Pays a fresh credit to the phone bill when the user's goal calls for it and billing says the
        number is the operator's; the credit's transfer id makes it once per credit. Answers the
        payment id, or "" for no sweep."""
        if not user_id:
            raise domain.UserIdRequired("user_id is required")
        if not credit_transfer_id:
            raise CreditNotFound("credit_transfer_id is required")
        user = await self._identity.get_user(user_id)
        if user.spending_goal != "MOBILE_SERVICES":
            return ""
        credit = await self._ledger.get(credit_transfer_id)
        if credit is None or credit.credit_user_id != user_id or credit.state != "POSTED":
            raise CreditNotFound(f"no posted credit {credit_transfer_id} to user {user_id}")
        if amount and amount != credit.amount_kopecks:
            raise CreditMismatch(f"credit {credit_transfer_id} is {credit.amount_kopecks} kopecks, not {amount}")
        if credit.amount_kopecks < domain.MIN_PAYMENT_KOPECKS:
            return ""
        try:
            payment, _ = await self._pay(user_id, f"sweep:{credit_transfer_id}", credit.amount_kopecks)
        except domain.PhoneNotOperator:
            return ""
        return payment.id

    # --- background -----------------------------------------------------------------------------

    async def reconcile_once(self, limit: int = 50) -> int:
        """Claims payments and certificates whose lease ran out and takes each as far as it goes."""
        now = self._clock.now()
        async with self._db.transaction() as session:
            repo = RedemptionRepository(session)
            payments = await repo.claim_due_payments(now, limit)
            for payment in payments:
                payment.next_check_at, payment.attempts = now + self._lease, payment.attempts + 1
            certificates = await repo.claim_due_certificates(now, limit)
            for cert in certificates:
                cert.next_check_at = now + self._lease
            payment_ids, certificate_ids = [p.id for p in payments], [c.id for c in certificates]
        jobs = [self._drive_payment(pid, reconciling=True) for pid in payment_ids]
        jobs += [self._drive_certificate(cid, raise_errors=False) for cid in certificate_ids]
        for outcome in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(outcome, BaseException):
                log.error("reconciliation step failed: %r", outcome)
        return len(jobs)

    async def deliver_notification(self, key: str, payload: dict[str, object]) -> None:
        params = payload.get("params") or {}
        assert isinstance(params, dict)
        await self._identity.send_notification(key, str(payload["user_id"]), str(payload["template"]),
                                               {str(k): str(v) for k, v in params.items()})


def _check_holder(cert: Certificate | None, user_id: str, certificate_id: str) -> Certificate:
    """Only the holder may see or hand over a certificate; to anyone else it does not exist."""
    if cert is None or cert.holder_user_id != user_id or cert.status not in VISIBLE_CERTIFICATE_STATES:
        raise domain.CertificateNotFound(f"no certificate {certificate_id}")
    if cert.status == CertificateStatus.REDEEMED:
        raise domain.CertificateRedeemed("a used certificate cannot be handed over")
    return cert
