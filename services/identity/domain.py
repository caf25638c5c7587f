"""Identity rules, with no I/O: phone numbers, codes, referral codes, spending goals,
notification texts, and the errors named as facts. Answers about codes never reveal whether a
number is registered."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneNumberType, carrier

from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)

CODE_LENGTH = 6
# No look-alikes: neither 0/O nor 1/I/L.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERRAL_CODE_LENGTH = 8
MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


class SpendingGoal(enum.StrEnum):
    MOBILE_SERVICES = "MOBILE_SERVICES"
    DEVICE_CERTIFICATE = "DEVICE_CERTIFICATE"


class UserStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class Purpose(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"


# --- errors -------------------------------------------------------------------------------


class PhoneInvalid(InvalidArgument):
    reason = "PHONE_INVALID"


class EmailInvalid(InvalidArgument):
    reason = "EMAIL_INVALID"


class CodeInvalid(Unauthenticated):
    reason = "CODE_INVALID"


class CodeExpired(Unauthenticated):
    reason = "CODE_EXPIRED"


class CodeLocked(ResourceExhausted):
    reason = "CODE_LOCKED"


class ResendCooldown(ResourceExhausted):
    reason = "RESEND_COOLDOWN"


class RateLimited(ResourceExhausted):
    reason = "RATE_LIMITED"


class PhoneLocked(ResourceExhausted):
    reason = "PHONE_LOCKED"


class ReferralCodeUnknown(InvalidArgument):
    reason = "REFERRAL_CODE_UNKNOWN"


class SelfReferral(InvalidArgument):
    reason = "SELF_REFERRAL"


class AssertionInvalid(Unauthenticated):
    reason = "ASSERTION_INVALID"


class AssertionReplayed(Unauthenticated):
    reason = "ASSERTION_REPLAYED"


class ReferrerAlreadySet(FailedPrecondition):
    reason = "REFERRER_ALREADY_SET"


class ReferralOnlyAtSignUp(FailedPrecondition):
    reason = "REFERRAL_ONLY_AT_SIGN_UP"


class SigningKeyUnknown(NotFound):
    reason = "SIGNING_KEY_UNKNOWN"


class LastSigningKey(FailedPrecondition):
    reason = "LAST_SIGNING_KEY"


class RefreshTokenInvalid(Unauthenticated):
    reason = "REFRESH_TOKEN_INVALID"


class RefreshTokenReused(Unauthenticated):
    reason = "REFRESH_TOKEN_REUSED"


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"


class SpendingGoalInvalid(InvalidArgument):
    reason = "SPENDING_GOAL_INVALID"


class TemplateUnknown(InvalidArgument):
    reason = "TEMPLATE_UNKNOWN"


class NotificationParamsInvalid(InvalidArgument):
    reason = "NOTIFICATION_PARAMS_INVALID"


class IdempotencyKeyRequired(InvalidArgument):
    reason = "IDEMPOTENCY_KEY_REQUIRED"


class DevOnly(FailedPrecondition):
    reason = "DEV_ONLY"


# --- phone numbers and e-mail -------------------------------------------------------------


@dataclass(frozen=True)
class Phone:
    e164: str
    operator: str  # home operator by number range; "" when unknown


def normalise_phone(raw: str) -> Phone:
    """A Russian mobile number in E.164 with its home operator, or PhoneInvalid."""
    text = (raw or "").strip()
    if not text or len(text) > 32:
        raise PhoneInvalid("a Russian mobile number is required")
    try:
        number = phonenumbers.parse(text, "RU")
    except phonenumbers.NumberParseException as exc:
        raise PhoneInvalid("not a phone number") from exc
    if (not phonenumbers.is_valid_number(number) or phonenumbers.region_code_for_number(number) != "RU"
            or phonenumbers.number_type(number) not in MOBILE_TYPES):
        raise PhoneInvalid("only Russian mobile numbers may join")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164=e164, operator=carrier.name_for_number(number, "en"))


def normalise_email(raw: str) -> str:
    try:
        return validate_email((raw or "").strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise EmailInvalid(f"not an e-mail address: {exc}") from exc


# --- codes --------------------------------------------------------------------------------


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def hash_code(pepper: str, challenge_id: str, code: str) -> str:
    """Keyed hash bound to the challenge: a stolen table gives neither the codes nor a shortcut."""
    return hmac.new(pepper.encode(), f"{challenge_id}:{code}".encode(), hashlib.sha256).hexdigest()


def code_matches(pepper: str, challenge_id: str, code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_code(pepper, challenge_id, code.strip()), stored_hash)


@dataclass(frozen=True)
class ChallengeState:
    expires_at: datetime
    attempts: int
    consumed: bool


def check_challenge(state: ChallengeState, now: datetime, max_attempts: int) -> None:
    """Whether a code may still be tried at all (before comparing it)."""
    if state.consumed:
        raise CodeInvalid("the code is wrong or was already used")
    if state.attempts >= max_attempts:
        raise CodeLocked("too many wrong codes: request a new one")
    if now >= state.expires_at:
        raise CodeExpired("the code has expired: request a new one")


def seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))


def resend_block(last_sent_at: datetime | None, locked_until: datetime | None, now: datetime,
                 cooldown: timedelta) -> tuple[datetime, type[ResourceExhausted], str] | None:
    """Until when no new code may be sent to a target, and why; None when one may."""
    if locked_until is not None and now < locked_until:
        return locked_until, PhoneLocked, "too many wrong codes: try again later"
    if last_sent_at is not None and now < last_sent_at + cooldown:
        return last_sent_at + cooldown, ResendCooldown, "a code was sent recently"
    return None


def check_resend(last_sent_at: datetime | None, locked_until: datetime | None, now: datetime,
                 cooldown: timedelta) -> None:
    block = resend_block(last_sent_at, locked_until, now, cooldown)
    if block is not None:
        until, error, message = block
        raise error(message, retry_after_seconds=seconds_until(until, now))


@dataclass(frozen=True)
class Limit:
    """At most `limit` codes per `window_seconds` for one `scope` value; limit 0 = no limit."""

    scope: str
    limit: int
    window_seconds: int

    def window_start(self, now: datetime) -> int:
        epoch = int(now.timestamp())
        return epoch - epoch % self.window_seconds

    def retry_after(self, now: datetime) -> int:
        return max(1, self.window_start(now) + self.window_seconds - int(now.timestamp()))


    def window_end(self, now: datetime) -> datetime:
        return datetime.fromtimestamp(self.window_start(now) + self.window_seconds, UTC)

    def key(self, value: str, now: datetime) -> str:
        """The counter of `value` in the window of `now` (values are hashed: no phones in keys)."""
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"{self.scope}:{digest}:{self.window_start(now)}"


@dataclass(frozen=True)
class _Refusal:
    until: datetime
    error: type[ResourceExhausted]
    message: str
    metadata: tuple[tuple[str, str], ...]


class KnownRefusals:
    """A process-local memory of refusals that stay true until a known moment: a target in its
    cooldown or locked, a limit's window already full. Committed state only ever makes these more
    true (a window's count never goes down, a later code moves the cooldown later), so answering
    from memory is what the database would answer, without the round trips; with several
    replicas each learns on its own and the database still decides everything else. Under a
    scripted flood almost every request is refused here."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: dict[str, _Refusal] = {}
        self._max = max_entries

    def check(self, key: str, now: datetime) -> None:
        known = self._entries.get(key)
        if known is None:
            return
        if now >= known.until:
            self._entries.pop(key, None)
            return
        raise known.error(known.message, retry_after_seconds=seconds_until(known.until, now), **dict(known.metadata))

    def remember(self, key: str, until: datetime, error: type[ResourceExhausted], message: str, now: datetime,
                 **metadata: str) -> None:
        if until <= now:
            return
        if len(self._entries) >= self._max:
            self._entries = {k: v for k, v in self._entries.items() if v.until > now}
            if len(self._entries) >= self._max:
                self._entries.clear()
        known = self._entries.get(key)
        if known is None or known.until < until:
            self._entries[key] = _Refusal(until, error, message, tuple(sorted(metadata.items())))

    def __len__(self) -> int:
        return len(self._entries)


# --- referral codes -----------------------------------------------------------------------


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


def normalise_referral_code(raw: str) -> str:
    return (raw or "").strip().upper()


def is_well_formed_referral_code(code: str) -> bool:
    return len(code) == REFERRAL_CODE_LENGTH and all(c in REFERRAL_ALPHABET for c in code)


# --- notifications ------------------------------------------------------------------------


def format_roubles(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    whole, part = divmod(abs(kopecks), 100)
    return f"{sign}{whole}.{part:02d} ₽"


_AMOUNT_PARAMS = {"amount_kopecks", "nominal_kopecks"}

TEMPLATES: dict[str, dict[str, str]] = {
    "cashback_credited": {
        "ru": "Кэшбэк {amount_kopecks} за покупку в {partner_name} начислен.",
        "en": "Cashback of {amount_kopecks} for your purchase at {partner_name} has been credited.",
    },
    "cashback_reversed": {
        "ru": "Магазин {partner_name} отменил или уменьшил покупку: списано {amount_kopecks} кэшбэка.",
        "en": "{partner_name} cancelled or reduced a purchase: {amount_kopecks} of cashback was taken back.",
    },
    "referral_bonus": {
        "ru": "Вам начислено {amount_kopecks} за приглашённого друга.",
        "en": "You received {amount_kopecks} for inviting a friend.",
    },
    "certificate_issued": {
        "ru": "Сертификат на {nominal_kopecks} выпущен. Код в личном кабинете.",
        "en": "A certificate for {nominal_kopecks} has been issued. Find its code in your account.",
    },
    "mobile_payment_completed": {
        "ru": "Баллами оплачено {amount_kopecks} за мобильную связь.",
        "en": "{amount_kopecks} paid towards your phone bill with points.",
    },
}


def code_text(purpose: Purpose, code: str) -> str:
    if purpose is Purpose.PHONE:
        return f"Код для входа в Кэшбэк: {code}. Никому его не сообщайте."
    return f"Код подтверждения e-mail в Кэшбэке: {code}. Your e-mail confirmation code: {code}."


def render(template: str, params: dict[str, str]) -> str:
    """The short text of a notification; `lang` ("ru" default, or "en") may be among the params."""
    texts = TEMPLATES.get(template)
    if texts is None:
        raise TemplateUnknown(f"unknown notification template {template!r}", template=template)
    lang = params.get("lang", "ru")
    text = texts.get(lang, texts["ru"])
    values: dict[str, str] = {}
    for name in _placeholders(text):
        raw = params.get(name, "")
        if name in _AMOUNT_PARAMS:
            try:
                values[name] = format_roubles(int(raw))
            except ValueError as exc:
                raise NotificationParamsInvalid(f"{name} must be an integer number of kopecks",
                                                param=name) from exc
        else:
            if not raw:
                raise NotificationParamsInvalid(f"{name} is required", param=name)
            values[name] = raw[:100]
    return text.format(**values)


def _placeholders(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name]
