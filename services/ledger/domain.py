"""Ledger rules, with no I/O. Accounts and transfers follow TigerBeetle's model: every transfer
moves a positive amount from a debit account to a credit account; pending transfers reserve the
amount until posted, voided or expired; user accounts may never be overdrawn (their debits,
posted and pending, never exceed their posted credits)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

MAX_TRANSFER_ID_LENGTH = 128
MAX_BATCH_SIZE = 8000
MAX_AMOUNT_KOPECKS = 10**13  # 100 billion roubles: far above any real transfer, far below int64
MAX_COUNTER_KOPECKS = 2**63 - 1  # an account's counters are int64 columns
MAX_TIMEOUT_SECONDS = 2**32 - 1  # TigerBeetle's u32 timeout: about 136 years
MAX_REFERENCE_LENGTH = 200
MAX_USER_ID_LENGTH = 64


class SystemAccount(enum.StrEnum):
    CASHBACK_FUNDING = "CASHBACK_FUNDING"
    REFERRAL_FUNDING = "REFERRAL_FUNDING"
    SERVICE_FUNDING = "SERVICE_FUNDING"
    MOBILE_PAYMENTS = "MOBILE_PAYMENTS"
    CERTIFICATES = "CERTIFICATES"


class Kind(enum.StrEnum):
    CASHBACK = "CASHBACK"
    REFERRAL_BONUS = "REFERRAL_BONUS"
    SERVICE_ACTIVATION = "SERVICE_ACTIVATION"
    MOBILE_PAYMENT = "MOBILE_PAYMENT"
    CERTIFICATE = "CERTIFICATE"


class State(enum.StrEnum):
    POSTED = "POSTED"
    PENDING = "PENDING"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


# The only shapes a transfer may take. Points reach a user only from a funding account and leave
# only to a redemption account: there is no way to pay points out as money.
ALLOWED_FLOWS: dict[Kind, tuple[SystemAccount | None, SystemAccount | None]] = {
    Kind.CASHBACK: (SystemAccount.CASHBACK_FUNDING, None),
    Kind.REFERRAL_BONUS: (SystemAccount.REFERRAL_FUNDING, None),
    Kind.SERVICE_ACTIVATION: (SystemAccount.SERVICE_FUNDING, None),
    Kind.MOBILE_PAYMENT: (None, SystemAccount.MOBILE_PAYMENTS),
    Kind.CERTIFICATE: (None, SystemAccount.CERTIFICATES),
}


@dataclass(frozen=True)
class AccountRef:
    """A user's account (`user_id`) or a system account (`system`); exactly one is set."""

    user_id: str | None = None
    system: SystemAccount | None = None

    @cached_property  # asked several times per transfer on the batch path; computed once
    def key(self) -> str:
        return f"user:{self.user_id}" if self.user_id is not None else f"system:{self.system}"

    @property
    def is_user(self) -> bool:
        return self.user_id is not None


@dataclass(frozen=True)
class TransferSpec:
    transfer_id: str
    debit: AccountRef
    credit: AccountRef
    amount_kopecks: int
    kind: Kind
    reference: str
    pending: bool
    timeout_seconds: int


class LedgerError(Exception):
    pass


class TransferInvalid(InvalidArgument):
    reason = "TRANSFER_INVALID"


class KindNotAllowed(InvalidArgument):
    reason = "KIND_NOT_ALLOWED_FOR_ACCOUNTS"


class InsufficientFunds(FailedPrecondition):
    reason = "INSUFFICIENT_FUNDS"


class TransferExistsWithDifferentFields(AlreadyExists):
    reason = "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS"


class CounterOverflow(FailedPrecondition):
    reason = "ACCOUNT_COUNTER_OVERFLOW"


class TransferNotFound(NotFound):
    reason = "TRANSFER_NOT_FOUND"


class TransferNotPending(FailedPrecondition):
    reason = "TRANSFER_NOT_PENDING"


class TransferAlreadyPosted(FailedPrecondition):
    reason = "TRANSFER_ALREADY_POSTED"


class TransferAlreadyVoided(FailedPrecondition):
    reason = "TRANSFER_ALREADY_VOIDED"


class TransferExpired(FailedPrecondition):
    reason = "TRANSFER_EXPIRED"


def validate(spec: TransferSpec) -> None:
    if not spec.transfer_id or len(spec.transfer_id) > MAX_TRANSFER_ID_LENGTH:
        raise TransferInvalid(f"transfer_id must have 1 to {MAX_TRANSFER_ID_LENGTH} characters",
                              reason="TRANSFER_ID_INVALID")
    if not 0 < spec.amount_kopecks <= MAX_AMOUNT_KOPECKS:
        raise TransferInvalid("amount_kopecks must be a positive number of kopecks", reason="AMOUNT_INVALID")
    for side in (spec.debit, spec.credit):
        if (side.user_id is None) == (side.system is None):
            raise TransferInvalid("each side names a user or a system account", reason="ACCOUNT_INVALID")
        if side.user_id is not None and (not side.user_id.strip() or len(side.user_id) > MAX_USER_ID_LENGTH):
            raise TransferInvalid(f"user_id must have 1 to {MAX_USER_ID_LENGTH} characters and not be blank",
                                  reason="ACCOUNT_INVALID")
    if spec.debit == spec.credit:
        raise TransferInvalid("debit and credit accounts must differ", reason="ACCOUNTS_MUST_DIFFER")
    if spec.pending and not 0 < spec.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise TransferInvalid(f"a pending transfer needs a timeout of 1 to {MAX_TIMEOUT_SECONDS} seconds",
                              reason="TIMEOUT_INVALID")
    if len(spec.reference) > MAX_REFERENCE_LENGTH:
        raise TransferInvalid(f"reference must have at most {MAX_REFERENCE_LENGTH} characters",
                              reason="REFERENCE_INVALID")
    if spec.kind not in ALLOWED_FLOWS:
        raise KindNotAllowed("transfer kind is required")
    if not is_allowed_flow(spec.kind, spec.debit.key, spec.credit.key):
        raise KindNotAllowed(f"a {spec.kind} transfer cannot go from {spec.debit.key} to {spec.credit.key}")


def differing_field(existing: TransferSpec, new: TransferSpec) -> str | None:
    """The first field (named as in the API) in which a replayed transfer differs from the stored one."""
    for name, api_name in (("debit", "debit_account"), ("credit", "credit_account"),
                           ("amount_kopecks", "amount_kopecks"), ("kind", "kind"), ("reference", "reference"),
                           ("pending", "pending")):
        if getattr(existing, name) != getattr(new, name):
            return api_name
    if new.pending and existing.timeout_seconds != new.timeout_seconds:
        return "timeout_seconds"
    return None


@dataclass
class Balances:
    """An account's four counters (TigerBeetle's debits/credits, posted/pending)."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        return self.posted - self.debits_pending


def check_can_debit(balances: Balances, amount: int, *, is_user: bool) -> None:
    if is_user and balances.available < amount:
        raise InsufficientFunds(
            f"not enough points: available {balances.available} kopecks, needed {amount}",
            available_kopecks=str(balances.available), needed_kopecks=str(amount),
        )


def check_no_overflow(counter: int) -> None:
    """TigerBeetle's overflows_*: a counter after the transfer must still fit its column."""
    if counter > MAX_COUNTER_KOPECKS:
        raise CounterOverflow("the transfer would overflow an account's counters")


def is_allowed_flow(kind: str, debit_key: str, credit_key: str) -> bool:
    """Whether a stored transfer (account keys "user:<id>" / "system:<NAME>") has an allowed shape."""
    if kind not in Kind.__members__:
        return False
    debit_system, credit_system = ALLOWED_FLOWS[Kind(kind)]
    return ((debit_key == f"system:{debit_system}" if debit_system else debit_key.startswith("user:"))
            and (credit_key == f"system:{credit_system}" if credit_system else credit_key.startswith("user:")))


def is_past_timeout(timeout_at: datetime | None, now: datetime) -> bool:
    return timeout_at is not None and timeout_at <= now
