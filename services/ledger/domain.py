"""Ledger rules, with no I/O. Accounts and transfers follow TigerBeetle's model: every transfer
moves a positive amount from a debit account to a credit account; pending transfers reserve the
amount until posted, voided or expired; user accounts may never be overdrawn (their debits,
posted and pending, never exceed their posted credits).

Reversals and debts: a credit taken back (a shop's decline after the cashback was credited) takes
what the user has available; the shortfall becomes the user's debt, owed to the DEBTS account,
and every later credit to the user repays it first. The ledger writes these transfers itself
(kinds CASHBACK_REVERSAL and DEBT_REPAYMENT): no caller can."""

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
# The ledger's own transfers next to a caller's: `<reversal_id>:debt`, `<transfer_id>:repay`.
# Caller ids may not end so (the column holds MAX_TRANSFER_ID_LENGTH plus the longer suffix).
DEBT_SUFFIX = ":debt"
REPAY_SUFFIX = ":repay"


class SystemAccount(enum.StrEnum):
    CASHBACK_FUNDING = "CASHBACK_FUNDING"
    REFERRAL_FUNDING = "REFERRAL_FUNDING"
    SERVICE_FUNDING = "SERVICE_FUNDING"
    MOBILE_PAYMENTS = "MOBILE_PAYMENTS"
    CERTIFICATES = "CERTIFICATES"
    # The program's receivable from users: debited by what reversals could not take, credited by
    # repayments. What it is owed (debits − credits) equals the sum of the users' debts.
    DEBTS = "DEBTS"


class Kind(enum.StrEnum):
    CASHBACK = "CASHBACK"
    REFERRAL_BONUS = "REFERRAL_BONUS"
    SERVICE_ACTIVATION = "SERVICE_ACTIVATION"
    MOBILE_PAYMENT = "MOBILE_PAYMENT"
    CERTIFICATE = "CERTIFICATE"
    CASHBACK_REVERSAL = "CASHBACK_REVERSAL"
    DEBT_REPAYMENT = "DEBT_REPAYMENT"


class State(enum.StrEnum):
    POSTED = "POSTED"
    PENDING = "PENDING"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


FUNDING_ACCOUNTS = (SystemAccount.CASHBACK_FUNDING, SystemAccount.REFERRAL_FUNDING, SystemAccount.SERVICE_FUNDING)

# The only shapes a transfer may take (debit, credit; None is a user's account). Points reach a
# user only from a funding account and leave only to a redemption account, back to the funding
# account they came from (a reversal) or to DEBTS (a repayment): there is no way to pay points out
# as money. A reversal's shortfall goes from DEBTS to the funding account.
ALLOWED_FLOWS: dict[Kind, frozenset[tuple[SystemAccount | None, SystemAccount | None]]] = {
    Kind.CASHBACK: frozenset({(SystemAccount.CASHBACK_FUNDING, None)}),
    Kind.REFERRAL_BONUS: frozenset({(SystemAccount.REFERRAL_FUNDING, None)}),
    Kind.SERVICE_ACTIVATION: frozenset({(SystemAccount.SERVICE_FUNDING, None)}),
    Kind.MOBILE_PAYMENT: frozenset({(None, SystemAccount.MOBILE_PAYMENTS)}),
    Kind.CERTIFICATE: frozenset({(None, SystemAccount.CERTIFICATES)}),
    Kind.CASHBACK_REVERSAL: frozenset({(debit, funding) for funding in FUNDING_ACCOUNTS
                                       for debit in (None, SystemAccount.DEBTS)}),
    Kind.DEBT_REPAYMENT: frozenset({(None, SystemAccount.DEBTS)}),
}
# Written by the ledger itself (ReverseCredit, repayments), never by a caller's transfer.
LEDGER_KINDS = frozenset({Kind.CASHBACK_REVERSAL, Kind.DEBT_REPAYMENT})


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


@dataclass(frozen=True)
class ReversalSpec:
    """A credit to take back from a user (ReverseCredit), to the funding account it came from."""

    reversal_id: str
    user_id: str
    system: SystemAccount | None
    amount_kopecks: int
    reference: str

    @property
    def user(self) -> AccountRef:
        return AccountRef(user_id=self.user_id)


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


def _check_id(name: str, value: str) -> None:
    if not value or len(value) > MAX_TRANSFER_ID_LENGTH:
        raise TransferInvalid(f"{name} must have 1 to {MAX_TRANSFER_ID_LENGTH} characters",
                              reason="TRANSFER_ID_INVALID")
    if value.endswith((DEBT_SUFFIX, REPAY_SUFFIX)):
        raise TransferInvalid(f"{name} must not end with {DEBT_SUFFIX} or {REPAY_SUFFIX} (the ledger's own ids)",
                              reason="TRANSFER_ID_INVALID")


def _check_amount(amount: int) -> None:
    if not 0 < amount <= MAX_AMOUNT_KOPECKS:
        raise TransferInvalid("amount_kopecks must be a positive number of kopecks", reason="AMOUNT_INVALID")


def _check_reference(reference: str) -> None:
    if len(reference) > MAX_REFERENCE_LENGTH:
        raise TransferInvalid(f"reference must have at most {MAX_REFERENCE_LENGTH} characters",
                              reason="REFERENCE_INVALID")


def _check_account(side: AccountRef) -> None:
    if (side.user_id is None) == (side.system is None):
        raise TransferInvalid("each side names a user or a system account", reason="ACCOUNT_INVALID")
    if side.user_id is not None and (not side.user_id.strip() or len(side.user_id) > MAX_USER_ID_LENGTH):
        raise TransferInvalid(f"user_id must have 1 to {MAX_USER_ID_LENGTH} characters and not be blank",
                              reason="ACCOUNT_INVALID")


def validate(spec: TransferSpec) -> None:
    """A caller's transfer (CreateTransfer, CreateTransfers)."""
    _check_id("transfer_id", spec.transfer_id)
    _check_amount(spec.amount_kopecks)
    for side in (spec.debit, spec.credit):
        _check_account(side)
    if spec.debit == spec.credit:
        raise TransferInvalid("debit and credit accounts must differ", reason="ACCOUNTS_MUST_DIFFER")
    if spec.pending and not 0 < spec.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise TransferInvalid(f"a pending transfer needs a timeout of 1 to {MAX_TIMEOUT_SECONDS} seconds",
                              reason="TIMEOUT_INVALID")
    _check_reference(spec.reference)
    if spec.kind not in ALLOWED_FLOWS:
        raise KindNotAllowed("transfer kind is required")
    if spec.kind in LEDGER_KINDS:
        raise KindNotAllowed(f"{spec.kind} transfers are written by the ledger only (ReverseCredit)")
    if not is_allowed_flow(spec.kind, spec.debit.key, spec.credit.key):
        raise KindNotAllowed(f"a {spec.kind} transfer cannot go from {spec.debit.key} to {spec.credit.key}")


def validate_reversal(spec: ReversalSpec) -> None:
    _check_id("reversal_id", spec.reversal_id)
    _check_account(spec.user)
    _check_amount(spec.amount_kopecks)
    _check_reference(spec.reference)
    if spec.system not in FUNDING_ACCOUNTS:
        raise KindNotAllowed(f"a credit is taken back to the funding account it came from "
                             f"({', '.join(FUNDING_ACCOUNTS)}), not {spec.system or 'none'}")


def split_reversal(amount: int, available: int) -> tuple[int, int]:
    """(taken from the user's available points, the shortfall that becomes debt)."""
    taken = max(0, min(amount, available))
    return taken, amount - taken


def repayment(credit: int, debt: int) -> int:
    """What a new credit of `credit` repays of a debt: as much of it as it can, first."""
    return min(credit, debt)


def differing_reversal_field(existing: ReversalSpec, new: ReversalSpec) -> str | None:
    """The first field (named as in the API) in which a replayed reversal differs from the stored one."""
    for name in ("user_id", "amount_kopecks", "system", "reference"):
        if getattr(existing, name) != getattr(new, name):
            return name
    return None


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
    # What the user owes (reversals that found the points spent); repaid first by new credits.
    debt: int = 0

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
    return any((debit_key == f"system:{debit_system}" if debit_system else debit_key.startswith("user:"))
               and (credit_key == f"system:{credit_system}" if credit_system else credit_key.startswith("user:"))
               for debit_system, credit_system in ALLOWED_FLOWS[Kind(kind)])


def is_past_timeout(timeout_at: datetime | None, now: datetime) -> bool:
    return timeout_at is not None and timeout_at <= now
