"""Tracking rules, with no I/O: partners' terms (rule sets), the decision that explains a purchase's
cashback, the purchase lifecycle and how a postback's status moves it.

Rounding: every amount is whole kopecks (int). A percent rate is in basis points and the cashback
is floored to whole kopecks: `amount_kopecks * rate_bps // 10000` (the user never gets a
fraction of a kopeck more than the rate gives). The cap is applied after rounding, then the
1-rouble floor: a result under 100 kopecks is not credited. No floats anywhere.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from services.common.limits import MAX_AMOUNT_KOPECKS, MAX_ID_LENGTH

MAX_RATE_BPS = 8000  # no rate above 80 %
ONE_ROUBLE = 100


class RateType(enum.StrEnum):
    PERCENT = "PERCENT"
    FIXED = "FIXED"


class Channel(enum.StrEnum):
    WEB = "WEB"
    APP = "APP"


class CustomerType(enum.StrEnum):
    INDIVIDUAL = "INDIVIDUAL"
    LEGAL_ENTITY = "LEGAL_ENTITY"


class DecisionReason(enum.StrEnum):
    RATE_APPLIED = "RATE_APPLIED"
    CAP_APPLIED = "CAP_APPLIED"
    BELOW_MINIMUM = "BELOW_MINIMUM"
    APP_ORDER = "APP_ORDER"
    LEGAL_ENTITY = "LEGAL_ENTITY"
    EXCLUDED_DESTINATION = "EXCLUDED_DESTINATION"
    OTHER_LOYALTY_USED = "OTHER_LOYALTY_USED"
    UNDER_ONE_ROUBLE = "UNDER_ONE_ROUBLE"
    UNATTRIBUTED = "UNATTRIBUTED"
    FIXED_SERVICE_REWARD = "FIXED_SERVICE_REWARD"
    SERVICE_ALREADY_REWARDED = "SERVICE_ALREADY_REWARDED"


class PurchaseStatus(enum.StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    ACCRUED = "ACCRUED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class ReportedStatus(enum.StrEnum):
    """What a partner or network says about an order (after per-network mapping)."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


class PostbackOutcome(enum.StrEnum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    CONFLICT = "CONFLICT"
    REJECTED = "REJECTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNATTRIBUTED = "UNATTRIBUTED"
    SUPERSEDED = "SUPERSEDED"  # stored, changes nothing: older than the newest report applied


class ClaimStatus(enum.StrEnum):
    OPEN = "OPEN"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


# --- errors, named as facts -------------------------------------------------------------------

class PartnerNotFound(NotFound):
    reason = "PARTNER_NOT_FOUND"


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"


class UserDisabled(FailedPrecondition):
    reason = "USER_DISABLED"


class AmountInvalid(InvalidArgument):
    reason = "AMOUNT_INVALID"


class RulesInvalid(InvalidArgument):
    reason = "RULES_INVALID"


class NetworkUnknown(NotFound):
    reason = "NETWORK_UNKNOWN"


class SignatureInvalid(Unauthenticated):
    reason = "SIGNATURE_INVALID"


class TimestampOutOfWindow(Unauthenticated):
    reason = "TIMESTAMP_OUT_OF_WINDOW"


class AddressNotAllowed(Unauthenticated):
    reason = "ADDRESS_NOT_ALLOWED"


class PostbackMalformed(InvalidArgument):
    reason = "POSTBACK_MALFORMED"


class PurchaseConflict(FailedPrecondition):
    reason = "PURCHASE_CONFLICT"


class PartnerMismatch(FailedPrecondition):
    reason = "PARTNER_MISMATCH"


class OrderAlreadyTracked(AlreadyExists):
    reason = "ORDER_ALREADY_TRACKED"


class OrderNotClaimable(FailedPrecondition):
    reason = "ORDER_NOT_CLAIMABLE"


class ClaimAmountMismatch(FailedPrecondition):
    reason = "CLAIM_AMOUNT_MISMATCH"


class RefusalsLimited(ResourceExhausted):
    reason = "RATE_LIMITED"


class PurchaseNotFound(NotFound):
    reason = "PURCHASE_NOT_FOUND"


class ServiceUnknown(NotFound):
    reason = "SERVICE_UNKNOWN"


class ClaimInvalid(InvalidArgument):
    reason = "CLAIM_INVALID"


class ClaimExists(AlreadyExists):
    reason = "CLAIM_EXISTS"


class ClaimNotFound(NotFound):
    reason = "CLAIM_NOT_FOUND"


class ClaimAlreadyDecided(FailedPrecondition):
    reason = "CLAIM_ALREADY_DECIDED"


class UserIdRequired(InvalidArgument):
    reason = "USER_ID_REQUIRED"


# --- rule sets --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tier:
    min_amount_kopecks: int
    rate_type: RateType
    rate_bps: int = 0
    fixed_kopecks: int = 0


@dataclass(frozen=True)
class RuleSet:
    tiers: tuple[Tier, ...]
    cap_kopecks: int = 0  # 0: no cap
    min_purchase_kopecks: int = 0
    excluded_domains: tuple[str, ...] = ()
    app_orders_allowed: bool = False
    exclusive_loyalty: bool = False
    legal_entities_excluded: bool = True
    version: int = 0

    def terms(self) -> dict[str, Any]:
        """The rule set without its version: equal terms mean the same version."""
        data = asdict(self)
        data.pop("version")
        data["tiers"] = [{**t, "rate_type": str(t["rate_type"])} for t in data["tiers"]]
        data["excluded_domains"] = list(data["excluded_domains"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.terms(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: int = 0) -> RuleSet:
        """From the catalogue file's or the database's form. A tier has `rate_bps` (percent) or
        `fixed_kopecks` (fixed amount); `rate_type` may be given explicitly."""
        try:
            tiers = []
            for raw in data["tiers"]:
                rate_type = RateType(raw["rate_type"]) if "rate_type" in raw else (
                    RateType.FIXED if "fixed_kopecks" in raw else RateType.PERCENT)
                tiers.append(Tier(int(raw.get("min_amount_kopecks", 0)), rate_type,
                                  int(raw.get("rate_bps", 0)), int(raw.get("fixed_kopecks", 0))))
            rules = cls(
                tiers=tuple(tiers),
                cap_kopecks=int(data.get("cap_kopecks", 0)),
                min_purchase_kopecks=int(data.get("min_purchase_kopecks", 0)),
                excluded_domains=tuple(normalise_domain(d) for d in data.get("excluded_domains", ())),
                app_orders_allowed=bool(data.get("app_orders_allowed", False)),
                exclusive_loyalty=bool(data.get("exclusive_loyalty", False)),
                legal_entities_excluded=bool(data.get("legal_entities_excluded", True)),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RulesInvalid(f"rule set is malformed: {exc}") from exc
        validate_rules(rules)
        return rules

    @classmethod
    def from_json(cls, text: str, version: int) -> RuleSet:
        return cls.from_dict(json.loads(text), version)


def validate_rules(rules: RuleSet) -> None:
    if not rules.tiers:
        raise RulesInvalid("a rule set needs at least one tier")
    if rules.tiers[0].min_amount_kopecks != 0:
        raise RulesInvalid("the first tier starts at 0")
    previous = -1
    for tier in rules.tiers:
        if tier.min_amount_kopecks <= previous:
            raise RulesInvalid("tiers must be strictly ascending by min_amount_kopecks")
        previous = tier.min_amount_kopecks
        if tier.rate_type is RateType.PERCENT and not 0 <= tier.rate_bps <= MAX_RATE_BPS:
            raise RulesInvalid(f"rate_bps must be 0..{MAX_RATE_BPS} (at most 80 %)")
        if tier.rate_type is RateType.FIXED and tier.fixed_kopecks < 0:
            raise RulesInvalid("fixed_kopecks must not be negative")
    if rules.cap_kopecks < 0 or rules.min_purchase_kopecks < 0:
        raise RulesInvalid("cap and minimum must not be negative")


def normalise_domain(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


def domain_excluded(destination: str, excluded: tuple[str, ...]) -> bool:
    """`tmall.ru` excludes `tmall.ru` and its subdomains (`www.tmall.ru`), not `nottmall.ru`."""
    host = normalise_domain(destination)
    return bool(host) and any(host == d or host.endswith("." + d) for d in excluded)


# --- decisions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PurchaseFacts:
    amount_kopecks: int
    channel: Channel = Channel.WEB
    customer_type: CustomerType = CustomerType.INDIVIDUAL
    destination_domain: str = ""
    other_loyalty_used: bool = False


@dataclass(frozen=True)
class Decision:
    reason: DecisionReason
    rule_version: int
    tier_index: int  # -1 when no tier applied
    amount_kopecks: int
    computed_kopecks: int  # before the cap and the 1-rouble floor
    cashback_kopecks: int
    explanation: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Decision:
        data = json.loads(text)
        data["reason"] = DecisionReason(data["reason"])
        return cls(**data)


def rub(kopecks: int) -> str:
    """123456 → "1234.56 RUB" (exact, integer arithmetic)."""
    sign = "-" if kopecks < 0 else ""
    whole, part = divmod(abs(kopecks), 100)
    return f"{sign}{whole}.{part:02d} RUB"


def percent(bps: int) -> str:
    whole, part = divmod(bps, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}".rstrip("0") + "%"


def _zero(reason: DecisionReason, rules: RuleSet, amount: int, explanation: str) -> Decision:
    return Decision(reason, rules.version, -1, amount, 0, 0, explanation)


def select_tier(rules: RuleSet, amount: int) -> int:
    """The last tier whose minimum the amount reaches (tiers ascend, the first starts at 0)."""
    index = 0
    for i, tier in enumerate(rules.tiers):
        if amount >= tier.min_amount_kopecks:
            index = i
    return index


def tier_cashback(tier: Tier, amount: int) -> int:
    if tier.rate_type is RateType.FIXED:
        return tier.fixed_kopecks
    return amount * tier.rate_bps // 10000  # floor to whole kopecks


def decide(rules: RuleSet, facts: PurchaseFacts) -> Decision:
    """What a purchase earns under `rules`, and why. Exclusions are checked first (legal entity,
    app order, excluded destination, other loyalty, minimum), then the tier's rate, the cap and
    the 1-rouble floor. One split-order part is one purchase: call this per part."""
    amount = facts.amount_kopecks
    if amount < 0:
        raise AmountInvalid("amount_kopecks must not be negative")
    if rules.legal_entities_excluded and facts.customer_type is CustomerType.LEGAL_ENTITY:
        return _zero(DecisionReason.LEGAL_ENTITY, rules, amount, "Purchases by legal entities earn no cashback.")
    if facts.channel is Channel.APP and not rules.app_orders_allowed:
        return _zero(DecisionReason.APP_ORDER, rules, amount,
                     "Orders placed in the partner's mobile app earn no cashback with this partner.")
    if domain_excluded(facts.destination_domain, rules.excluded_domains):
        return _zero(DecisionReason.EXCLUDED_DESTINATION, rules, amount,
                     f"Purchases on {normalise_domain(facts.destination_domain)} earn no cashback.")
    if rules.exclusive_loyalty and facts.other_loyalty_used:
        return _zero(DecisionReason.OTHER_LOYALTY_USED, rules, amount,
                     "The order used the shop's own bonuses or miles, so it earns no cashback.")
    if amount < rules.min_purchase_kopecks:
        return _zero(DecisionReason.BELOW_MINIMUM, rules, amount,
                     f"Purchases under {rub(rules.min_purchase_kopecks)} earn no cashback.")
    index = select_tier(rules, amount)
    tier = rules.tiers[index]
    computed = tier_cashback(tier, amount)
    rate = rub(tier.fixed_kopecks) if tier.rate_type is RateType.FIXED else percent(tier.rate_bps)
    if rules.cap_kopecks and computed > rules.cap_kopecks:
        return Decision(DecisionReason.CAP_APPLIED, rules.version, index, amount, computed, rules.cap_kopecks,
                        f"{rate} would give {rub(computed)}, capped at {rub(rules.cap_kopecks)} per purchase.")
    if computed < ONE_ROUBLE:
        return Decision(DecisionReason.UNDER_ONE_ROUBLE, rules.version, index, amount, computed, 0,
                        f"{rate} gives {rub(computed)}, and cashback under 1 rouble is not credited.")
    return Decision(DecisionReason.RATE_APPLIED, rules.version, index, amount, computed, computed,
                    f"{rate} of {rub(amount)} gives {rub(computed)} cashback.")


def unattributed(rules: RuleSet | None, facts: PurchaseFacts) -> Decision:
    """No recorded click: nothing is credited until a claim attaches the purchase to a user.
    `computed_kopecks` still says what the terms would give."""
    computed = decide(rules, facts).cashback_kopecks if rules is not None else 0
    return Decision(DecisionReason.UNATTRIBUTED, rules.version if rules else 0, -1, facts.amount_kopecks,
                    computed, 0, "No recorded click leads to this purchase, so it cannot be credited "
                    "unless a claim is approved.")


def service_reward(service_name: str, amount_kopecks: int, *, already_this_month: bool = False) -> Decision:
    if already_this_month:
        return Decision(DecisionReason.SERVICE_ALREADY_REWARDED, 0, -1, 0, amount_kopecks, 0,
                        f"Subscribing to {service_name} is rewarded once a calendar month; this month's reward "
                        "was already given.")
    return Decision(DecisionReason.FIXED_SERVICE_REWARD, 0, -1, 0, amount_kopecks, amount_kopecks,
                    f"Fixed reward of {rub(amount_kopecks)} for subscribing to {service_name}.")


# --- lifecycle --------------------------------------------------------------------------------
# A purchase follows the NEWEST report of its shop (by the shop's event time, then by arrival): an
# older report never moves it back (it is stored and answered SUPERSEDED), and whatever order a set
# of reports arrives in, the purchase ends in the state of the newest one. Crediting follows the
# state: an approved purchase is credited after the accrual delay; a later decline, a lower amount
# or a move back to pending takes back what was credited (or the difference), a higher amount
# credits the difference. EXPIRED (pending for longer than the window) is final.

_STATUS_OF_REPORT = {ReportedStatus.PENDING: PurchaseStatus.PENDING, ReportedStatus.APPROVED: PurchaseStatus.CONFIRMED,
                     ReportedStatus.DECLINED: PurchaseStatus.REJECTED}


def initial_status(reported: ReportedStatus) -> PurchaseStatus:
    return _STATUS_OF_REPORT[reported]


def is_older(event_time: datetime | None, newest_applied: datetime | None) -> bool:
    """Whether a report is older than the newest one applied to its purchase. Reports without an
    event time are ordered by arrival: such a report is never older than what came before it."""
    return event_time is not None and newest_applied is not None and event_time < newest_applied


class Effect(enum.Enum):
    """What a report does to an existing purchase."""

    NONE = "none"  # the same status and amount: nothing changes
    SUPERSEDED = "superseded"  # older than the newest applied report, or the purchase expired: stored only
    MOVE = "move"  # a new status and/or amount


@dataclass(frozen=True)
class Move:
    effect: Effect
    status: PurchaseStatus
    detail: str = ""


def apply_report(status: PurchaseStatus, amount: int, newest_applied: datetime | None, reported: ReportedStatus,
                 new_amount: int, event_time: datetime | None, *, support_approved: bool = False) -> Move:
    """How a report moves an existing purchase (see the section's comment). The status returned
    for an approved report of a credited purchase stays ACCRUED: only the amount can change. A
    purchase that support approved from a claim is not sent back to pending by the shop's late
    `pending` report (the shop's approval or decline still moves it)."""
    if is_older(event_time, newest_applied):
        return Move(Effect.SUPERSEDED, status, "older than the newest report applied")
    if status is PurchaseStatus.EXPIRED:
        return Move(Effect.SUPERSEDED, status, "the purchase expired before the shop confirmed it")
    if support_approved and reported is ReportedStatus.PENDING and status in (PurchaseStatus.CONFIRMED,
                                                                               PurchaseStatus.ACCRUED):
        return Move(Effect.NONE, status, "approved by support; the shop's pending changes nothing")
    target = _STATUS_OF_REPORT[reported]
    if status is PurchaseStatus.ACCRUED and target is PurchaseStatus.CONFIRMED:
        target = PurchaseStatus.ACCRUED
    if target is status and amount == new_amount:
        return Move(Effect.NONE, status, "nothing new")
    if target is status:
        return Move(Effect.MOVE, status, f"amount corrected to {new_amount}")
    detail = {PurchaseStatus.PENDING: "back to pending", PurchaseStatus.CONFIRMED: "confirmed",
              PurchaseStatus.REJECTED: "declined by the partner"}[target]
    return Move(Effect.MOVE, target, detail)


def credit_due(status: PurchaseStatus, cashback_kopecks: int, credited_kopecks: int) -> int:
    """What the ledger must still move for a purchase that the accrual job has credited before (or
    is crediting now): positive to credit, negative to take back. Only ACCRUED keeps its cashback."""
    target = cashback_kopecks if status is PurchaseStatus.ACCRUED else 0
    return target - credited_kopecks


# --- claims -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimInput:
    user_id: str
    partner_id: str
    order_id: str
    order_date: str
    amount_kopecks: int
    comment: str = ""


def validate_claim(claim: ClaimInput, today: date) -> date:
    if not claim.user_id:
        raise UserIdRequired("user_id is required")
    if not claim.order_id.strip() or len(claim.order_id) > MAX_ID_LENGTH:
        raise ClaimInvalid(f"order_id must have 1 to {MAX_ID_LENGTH} characters", field="order_id")
    if not 0 < claim.amount_kopecks <= MAX_AMOUNT_KOPECKS:
        raise ClaimInvalid("amount_kopecks must be positive", field="amount_kopecks")
    if len(claim.comment) > 2000:
        raise ClaimInvalid("comment is at most 2000 characters", field="comment")
    try:
        order_date = date.fromisoformat(claim.order_date)
    except ValueError as exc:
        raise ClaimInvalid("order_date must be YYYY-MM-DD", field="order_date") from exc
    if order_date > today:
        raise ClaimInvalid("order_date is in the future", field="order_date")
    return order_date


# A claim's amount agrees with the shop's report when they differ by at most 5 % of the report or
# 100 kopecks, whichever is more (the user types the amount from the receipt; delivery, rounding
# and small discounts make it differ a little; a different order differs by more).
CLAIM_TOLERANCE_BPS = 500
CLAIM_TOLERANCE_MIN_KOPECKS = 100


def claim_amount_agrees(claimed: int, reported: int) -> bool:
    return abs(claimed - reported) <= max(CLAIM_TOLERANCE_MIN_KOPECKS, reported * CLAIM_TOLERANCE_BPS // 10000)
