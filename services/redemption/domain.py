"""Redemption rules, with no I/O: what a payment or a certificate may be, certificate codes, what a
certificate covers at the store, and the USSD screen."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.limits import (
    CERTIFICATE_CODE_LENGTH,
    CERTIFICATE_CODE_RANDOM_SYMBOLS,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_NOMINAL_KOPECKS,
    MAX_PAYMENT_KOPECKS,
    MIN_NOMINAL_KOPECKS,
    MIN_PAYMENT_KOPECKS,
    MIN_TO_PAY_KOPECKS,
)

USSD_BALANCE_REQUEST = "*100*1#"
USSD_MAX_CHARS = 80


class PaymentStatus(enum.StrEnum):
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class CertificateStatus(enum.StrEnum):
    # Row written, points not yet confirmed gone: invisible to the user until ACTIVE.
    ISSUING = "ISSUING"
    ACTIVE = "ACTIVE"
    REDEEMED = "REDEEMED"
    # The points could not be taken (not enough): no certificate. A retry with the same key tries again.
    FAILED = "FAILED"


# --- errors, named as facts -------------------------------------------------------------------

class UserIdRequired(InvalidArgument):
    reason = "USER_ID_REQUIRED"


class IdempotencyKeyMissing(InvalidArgument):
    reason = "IDEMPOTENCY_KEY_MISSING"


class IdempotencyKeyInvalid(InvalidArgument):
    reason = "IDEMPOTENCY_KEY_INVALID"


class IdempotencyKeyReused(AlreadyExists):
    reason = "IDEMPOTENCY_KEY_REUSED"


class AmountInvalid(InvalidArgument):
    reason = "AMOUNT_INVALID"


class NominalInvalid(InvalidArgument):
    reason = "NOMINAL_INVALID"


class DevicePriceInvalid(InvalidArgument):
    reason = "DEVICE_PRICE_INVALID"


class SaleIdInvalid(InvalidArgument):
    reason = "SALE_ID_INVALID"


class StoreIdInvalid(InvalidArgument):
    reason = "STORE_ID_INVALID"


class InsufficientFunds(FailedPrecondition):
    reason = "INSUFFICIENT_FUNDS"


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"


class PaymentNotFound(NotFound):
    reason = "PAYMENT_NOT_FOUND"


class CertificateNotFound(NotFound):
    reason = "CERTIFICATE_NOT_FOUND"


class CertificateCodeMalformed(InvalidArgument):
    reason = "CERTIFICATE_CODE_MALFORMED"


class CertificateRedeemed(FailedPrecondition):
    reason = "CERTIFICATE_REDEEMED"


class SaleAlreadyHasCertificate(FailedPrecondition):
    reason = "SALE_ALREADY_HAS_CERTIFICATE"


class RecipientNotFound(NotFound):
    reason = "RECIPIENT_NOT_FOUND"


class RecipientIsHolder(InvalidArgument):
    reason = "RECIPIENT_IS_HOLDER"


class PhoneNotOperator(FailedPrecondition):
    """Points pay the operator's own services only; other operators' subscribers spend them on
    certificates."""

    reason = "PHONE_NOT_OPERATOR"


# --- requests ---------------------------------------------------------------------------------

def check_user_and_key(user_id: str, idempotency_key: str) -> None:
    if not user_id:
        raise UserIdRequired("user_id is required")
    if not idempotency_key:
        raise IdempotencyKeyMissing("an idempotency key is required for money operations")
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH or not idempotency_key.isprintable():
        raise IdempotencyKeyInvalid(f"idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters")


def check_payment_amount(amount_kopecks: int) -> None:
    if not MIN_PAYMENT_KOPECKS <= amount_kopecks <= MAX_PAYMENT_KOPECKS:
        raise AmountInvalid(f"amount must be whole kopecks from {MIN_PAYMENT_KOPECKS} (1 rouble)",
                            min_kopecks=str(MIN_PAYMENT_KOPECKS))


def check_nominal(nominal_kopecks: int) -> None:
    if (not MIN_NOMINAL_KOPECKS <= nominal_kopecks <= MAX_NOMINAL_KOPECKS) or nominal_kopecks % 100:
        raise NominalInvalid("a certificate's nominal is 100 to 80,000 roubles, in whole roubles",
                             min_kopecks=str(MIN_NOMINAL_KOPECKS), max_kopecks=str(MAX_NOMINAL_KOPECKS))


def check_same_request(stored_amount: int, amount: int, what: str) -> None:
    """A replay with the same key must ask for the same thing."""
    if stored_amount != amount:
        raise IdempotencyKeyReused(f"this idempotency key was used for a {what} of {stored_amount} kopecks",
                                   field="amount_kopecks")


# --- certificate codes ------------------------------------------------------------------------
# 31 symbols without look-alikes (no 0/O, 1/I/L); 31 is prime, so a weighted check symbol with
# distinct weights catches every single wrong symbol and every swap of two different symbols.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_RANDOM_SYMBOLS = CERTIFICATE_CODE_RANDOM_SYMBOLS
CODE_LENGTH = CERTIFICATE_CODE_LENGTH
CODE_GROUP = 4
_BASE = len(CODE_ALPHABET)
_VALUE = {ch: i for i, ch in enumerate(CODE_ALPHABET)}


def _check_symbol(body: str) -> str:
    # Σ (i+1)·v_i over all 20 positions ≡ 0 (mod 31); solve for the last one (weight 20).
    total = sum((i + 1) * _VALUE[ch] for i, ch in enumerate(body))
    value = (-total * pow(CODE_LENGTH, -1, _BASE)) % _BASE
    return CODE_ALPHABET[value]


def new_certificate_code() -> str:
    """A fresh code, normalised (no separators)."""
    body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_RANDOM_SYMBOLS))
    return body + _check_symbol(body)


def format_code(code: str) -> str:
    """For reading aloud and typing: XXXX-XXXX-XXXX-XXXX-XXXX."""
    return "-".join(code[i:i + CODE_GROUP] for i in range(0, len(code), CODE_GROUP))


def normalize_code(raw: str) -> str:
    """Accepts any case, spaces and dashes; refuses a code whose check symbol does not match, so a
    mistyped code never reaches the database."""
    code = "".join(ch for ch in raw.upper() if ch not in " -\t")
    if len(code) != CODE_LENGTH or any(ch not in _VALUE for ch in code) or _check_symbol(code[:-1]) != code[-1]:
        raise CertificateCodeMalformed("this is not a valid certificate code; check it for typos")
    return code


# --- a certificate's history ------------------------------------------------------------------

class CertificateEventKind(enum.StrEnum):
    ISSUED = "ISSUED"
    HANDED_OVER = "HANDED_OVER"
    REDEEMED = "REDEEMED"


@dataclass(frozen=True)
class CertificateEvent:
    kind: CertificateEventKind
    at: datetime
    from_user_id: str = ""
    to_user_id: str = ""
    store_id: str = ""


def certificate_events(buyer: str, issued_at: datetime, handovers: Sequence[tuple[str, str, datetime]],
                       store_id: str | None, redeemed_at: datetime | None) -> list[CertificateEvent]:
    """Oldest first: issued to the buyer, each hand-over (giver, recipient, when), the redemption."""
    events = [CertificateEvent(CertificateEventKind.ISSUED, issued_at, from_user_id=buyer)]
    events += [CertificateEvent(CertificateEventKind.HANDED_OVER, at, from_user_id=giver, to_user_id=taker)
               for giver, taker, at in handovers]
    if redeemed_at is not None:
        events.append(CertificateEvent(CertificateEventKind.REDEEMED, redeemed_at, store_id=store_id or ""))
    return events


# --- at the store -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Coverage:
    covered_kopecks: int
    to_pay_kopecks: int
    forfeited_kopecks: int


def check_sale(store_id: str, sale_id: str, device_price_kopecks: int) -> None:
    if not store_id or len(store_id) > 64:
        raise StoreIdInvalid("store_id is required")
    if not sale_id or len(sale_id) > 128:
        raise SaleIdInvalid("sale_id must have 1 to 128 characters")
    if not MIN_TO_PAY_KOPECKS < device_price_kopecks <= MAX_PAYMENT_KOPECKS:
        raise DevicePriceInvalid("device price must be more than 1 rouble, in kopecks")


def coverage(nominal_kopecks: int, device_price_kopecks: int) -> Coverage:
    """Covers up to the whole price, but the buyer pays at least 1 rouble; the rest of the nominal
    is forfeited (never returned as points)."""
    covered = max(0, min(nominal_kopecks, device_price_kopecks - MIN_TO_PAY_KOPECKS))
    return Coverage(covered, device_price_kopecks - covered, nominal_kopecks - covered)


def recorded_coverage(nominal_kopecks: int, device_price_kopecks: int, covered_kopecks: int) -> Coverage:
    """The answer given when the certificate was applied, from what was recorded then."""
    return Coverage(covered_kopecks, device_price_kopecks - covered_kopecks, nominal_kopecks - covered_kopecks)


# --- USSD ---------------------------------------------------------------------------------------

USSD_UNKNOWN_REQUEST = "Неизвестный запрос. Баланс кешбэка: *100*1#"
USSD_UNKNOWN_NUMBER = "Номер не подключён к Кешбэку. Подключитесь на сайте или в приложении."
USSD_UNAVAILABLE = "Сервис временно недоступен. Попробуйте позже."


def normalize_ussd_request(request: str) -> str:
    return request.strip().replace(" ", "")


def ussd_phone(msisdn: str) -> str:
    """USSD gateways send the MSISDN as digits: 79161234567 (international, no plus) or, from some
    gateways, 89161234567 (national). Identity normalises the rest."""
    text = msisdn.strip()
    if text.isdigit() and len(text) == 11 and text.startswith("7"):
        return f"+{text}"
    return text


def format_points(kopecks: int) -> str:
    """150,00 — Russian style: comma for decimals, spaces between thousands."""
    sign = "-" if kopecks < 0 else ""
    roubles, rest = divmod(abs(kopecks), 100)
    return f"{sign}{roubles:,}".replace(",", " ") + f",{rest:02d}"


def points_word(kopecks: int) -> str:
    if kopecks % 100:
        return "балла"  # fractions take the genitive singular: 150,50 балла
    n = kopecks // 100
    if n % 10 == 1 and n % 100 != 11:
        return "балл"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "балла"
    return "баллов"


def ussd_balance_text(posted_kopecks: int, available_kopecks: int) -> str:
    text = (f"Баланс кешбэка: {format_points(posted_kopecks)} {points_word(posted_kopecks)}. "
            f"Доступно: {format_points(available_kopecks)}")
    if len(text) > USSD_MAX_CHARS:  # only for absurd balances; keep the number that matters
        text = f"Баланс: {format_points(posted_kopecks)}. Доступно: {format_points(available_kopecks)}"
    return text[:USSD_MAX_CHARS]
