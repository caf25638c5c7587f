"""Request and response bodies. Field names are the protobuf field names; money is integer
kopecks as JSON numbers (not protobuf-JSON strings); enums by their short names; times RFC 3339."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from cashback.identity.v1 import identity_pb2
from cashback.ledger.v1 import ledger_pb2
from cashback.redemption.v1 import redemption_pb2
from cashback.tracking.v1 import tracking_pb2
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from services.common import limits


def proto_enum(name: str, descriptor: EnumDescriptor, prefix: str) -> type[enum.StrEnum]:
    """A str enum of a proto enum's short names (`SPENDING_GOAL_MOBILE_SERVICES` → `MOBILE_SERVICES`)."""
    names = [v.name.removeprefix(prefix) for v in descriptor.values if not v.name.endswith("_UNSPECIFIED")]
    return enum.StrEnum(name, {n: n for n in names})  # type: ignore[return-value]


def short(descriptor: EnumDescriptor, value: int, prefix: str) -> str | None:
    found = descriptor.values_by_number.get(value)
    if found is None or found.name.endswith("_UNSPECIFIED"):
        return None
    return found.name.removeprefix(prefix)


def to_proto_enum(descriptor: EnumDescriptor, value: enum.Enum | str | None, prefix: str) -> int:
    if value is None:
        return 0
    return descriptor.values_by_name[prefix + str(getattr(value, "value", value))].number


def ts(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    return getattr(message, field).ToDatetime().replace(tzinfo=UTC)


SpendingGoal = proto_enum("SpendingGoal", identity_pb2.SpendingGoal.DESCRIPTOR, "SPENDING_GOAL_")
UserStatus = proto_enum("UserStatus", identity_pb2.UserStatus.DESCRIPTOR, "USER_STATUS_")
NotificationChannel = proto_enum("NotificationChannel", identity_pb2.Channel.DESCRIPTOR, "CHANNEL_")
PurchaseChannel = proto_enum("PurchaseChannel", tracking_pb2.Channel.DESCRIPTOR, "CHANNEL_")
CustomerType = proto_enum("CustomerType", tracking_pb2.CustomerType.DESCRIPTOR, "CUSTOMER_TYPE_")
RateType = proto_enum("RateType", tracking_pb2.RateType.DESCRIPTOR, "RATE_TYPE_")
DecisionReason = proto_enum("DecisionReason", tracking_pb2.DecisionReason.DESCRIPTOR, "DECISION_REASON_")
PurchaseStatus = proto_enum("PurchaseStatus", tracking_pb2.PurchaseStatus.DESCRIPTOR, "PURCHASE_STATUS_")
PostbackOutcome = proto_enum("PostbackOutcome", tracking_pb2.PostbackOutcome.DESCRIPTOR, "POSTBACK_OUTCOME_")
ClaimStatus = proto_enum("ClaimStatus", tracking_pb2.ClaimStatus.DESCRIPTOR, "CLAIM_STATUS_")
PaymentStatus = proto_enum("PaymentStatus", redemption_pb2.PaymentStatus.DESCRIPTOR, "PAYMENT_STATUS_")
CertificateStatus = proto_enum("CertificateStatus", redemption_pb2.CertificateStatus.DESCRIPTOR,
                               "CERTIFICATE_STATUS_")
TransferKind = proto_enum("TransferKind", ledger_pb2.TransferKind.DESCRIPTOR, "TRANSFER_KIND_")
TransferState = proto_enum("TransferState", ledger_pb2.TransferState.DESCRIPTOR, "TRANSFER_STATE_")
EntryDirection = proto_enum("EntryDirection", ledger_pb2.EntryDirection.DESCRIPTOR, "ENTRY_DIRECTION_")
CounterpartyKind = proto_enum("CounterpartyKind", ledger_pb2.CounterpartyKind.DESCRIPTOR, "COUNTERPARTY_KIND_")
SystemAccount = proto_enum("SystemAccount", ledger_pb2.SystemAccount.DESCRIPTOR, "SYSTEM_ACCOUNT_")

Kopecks = int


def _json_number(value: Any) -> Any:
    """Amounts are JSON integers (416.0 is one too), never strings or booleans."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


StrictKopecks = Annotated[int, BeforeValidator(_json_number)]
# The limits the services enforce, documented here so that a request the document calls valid is
# never refused for its shape (only for facts the schema cannot know: balance, a code's check symbol).
MAX_PURCHASE_KOPECKS = limits.MAX_AMOUNT_KOPECKS
MAX_ID_LENGTH = limits.MAX_ID_LENGTH
CERTIFICATE_CODE = rf"^[ \t-]*(?:[2-9A-HJKMNP-Za-hjkmnp-z][ \t-]*){{{limits.CERTIFICATE_CODE_LENGTH}}}$"
SLUG = r"^[a-z0-9][a-z0-9._-]*$"
PHONE = Field(min_length=3, max_length=32, examples=["+79161234567"])


class Body(BaseModel):
    """Request bodies reject unknown fields, so typos are errors rather than silently ignored, and
    take amounts as JSON integers only (`StrictKopecks`: no "100" for 100)."""

    model_config = ConfigDict(extra="forbid")


# --- identity ---------------------------------------------------------------------------------

class PhoneCodeRequest(Body):
    phone: str = PHONE


class ChallengeResponse(BaseModel):
    challenge_id: str = Field(examples=["3f1c2a9e-5b7d-4c1e-9a0b-2d4e6f8a1b3c"])
    expires_in_seconds: int = Field(examples=[300])
    resend_in_seconds: int = Field(examples=[60])


class PhoneVerifyRequest(Body):
    challenge_id: str = Field(min_length=1, max_length=100)
    code: str = Field(min_length=1, max_length=16, examples=["123456"])
    referral_code: str | None = Field(default=None, max_length=32, examples=["K7M2QX9P"])


class OperatorSignInRequest(Body):
    # Well inside the body cap even with every character escaped (\uXXXX: 6 bytes).
    assertion: str = Field(min_length=1, max_length=8192, examples=["eyJhbGciOiJFZERTQSJ9.eyJtc2lzZG4iOi…"])


class RefreshRequest(Body):
    refresh_token: str = Field(min_length=1, max_length=4096, examples=["rt_5Yw2c9…"])


class User(BaseModel):
    user_id: str
    phone: str = Field(examples=["+79161234567"])
    email: str | None = Field(description="Empty until confirmed.", examples=["anna@example.com"])
    operator: str | None = Field(examples=["MTS"])
    is_operator_subscriber: bool
    referral_code: str = Field(examples=["K7M2QX9P"])
    spending_goal: SpendingGoal | None  # type: ignore[valid-type]
    status: UserStatus | None  # type: ignore[valid-type]
    create_time: datetime | None

    @classmethod
    def of(cls, u: identity_pb2.User) -> User:
        return cls(user_id=u.user_id, phone=u.phone, email=u.email or None, operator=u.operator or None,
                   is_operator_subscriber=u.is_operator_subscriber, referral_code=u.referral_code,
                   spending_goal=short(identity_pb2.SpendingGoal.DESCRIPTOR, u.spending_goal, "SPENDING_GOAL_"),
                   status=short(identity_pb2.UserStatus.DESCRIPTOR, u.status, "USER_STATUS_"),
                   create_time=ts(u, "create_time"))


class TokensResponse(BaseModel):
    access_token: str
    refresh_token: str
    expires_in_seconds: int = Field(examples=[900])


class SignInResponse(TokensResponse):
    user: User
    created: bool = Field(description="True when this sign-in created the account.")

    @classmethod
    def of(cls, r: Any) -> SignInResponse:
        return cls(access_token=r.tokens.access_token, refresh_token=r.tokens.refresh_token,
                   expires_in_seconds=r.tokens.expires_in_seconds, user=User.of(r.user), created=r.created)


class UpdateMeRequest(Body):
    spending_goal: SpendingGoal = Field(examples=["MOBILE_SERVICES"])  # type: ignore[valid-type]


class EmailCodeRequest(Body):
    email: str = Field(min_length=3, max_length=254, examples=["anna@example.com"])


class EmailVerifyRequest(Body):
    challenge_id: str = Field(min_length=1, max_length=100)
    code: str = Field(min_length=1, max_length=16, examples=["123456"])


class Notification(BaseModel):
    notification_id: str
    template: str = Field(examples=["cashback_credited"])
    channel: NotificationChannel | None  # type: ignore[valid-type]
    text: str
    create_time: datetime | None
    deliver_time: datetime | None

    @classmethod
    def of(cls, n: identity_pb2.Notification) -> Notification:
        return cls(notification_id=n.notification_id, template=n.template,
                   channel=short(identity_pb2.Channel.DESCRIPTOR, n.channel, "CHANNEL_"), text=n.text,
                   create_time=ts(n, "create_time"), deliver_time=ts(n, "deliver_time"))


class NotificationPage(BaseModel):
    notifications: list[Notification]
    next_page_token: str = Field(description="Empty when there is nothing more.")


class DevMessage(BaseModel):
    channel: NotificationChannel | None  # type: ignore[valid-type]
    to: str
    text: str
    create_time: datetime | None


class DevOutbox(BaseModel):
    messages: list[DevMessage]


# --- ledger -----------------------------------------------------------------------------------

class BalanceResponse(BaseModel):
    balance_kopecks: Kopecks = Field(description="Posted points.", examples=[125000])
    available_kopecks: Kopecks = Field(description="What can be spent now (posted minus holds).", examples=[120000])
    pending_cashback_kopecks: Kopecks = Field(description="Cashback of purchases not yet credited.",
                                              examples=[35000])
    debt_kopecks: Kopecks = Field(description="Cashback taken back (a shop's decline after crediting) that the "
                                  "points could not cover; the next credits repay it first.", examples=[0])


class StatementEntry(BaseModel):
    transfer_id: str = Field(examples=["cashback:7b1d…"])
    kind: TransferKind | None  # type: ignore[valid-type]
    direction: EntryDirection | None  # type: ignore[valid-type]
    amount_kopecks: Kopecks
    state: TransferState | None  # type: ignore[valid-type]
    counterparty_kind: CounterpartyKind | None  # type: ignore[valid-type]
    counterparty_system: SystemAccount | None  # type: ignore[valid-type]
    reference: str
    create_time: datetime | None

    @classmethod
    def of(cls, e: ledger_pb2.StatementEntry) -> StatementEntry:
        return cls(transfer_id=e.transfer_id,
                   kind=short(ledger_pb2.TransferKind.DESCRIPTOR, e.kind, "TRANSFER_KIND_"),
                   direction=short(ledger_pb2.EntryDirection.DESCRIPTOR, e.direction, "ENTRY_DIRECTION_"),
                   amount_kopecks=e.amount_kopecks,
                   state=short(ledger_pb2.TransferState.DESCRIPTOR, e.state, "TRANSFER_STATE_"),
                   counterparty_kind=short(ledger_pb2.CounterpartyKind.DESCRIPTOR, e.counterparty_kind,
                                           "COUNTERPARTY_KIND_"),
                   counterparty_system=short(ledger_pb2.SystemAccount.DESCRIPTOR, e.counterparty_system,
                                             "SYSTEM_ACCOUNT_"),
                   reference=e.reference, create_time=ts(e, "create_time"))


class StatementPage(BaseModel):
    entries: list[StatementEntry]
    next_page_token: str = Field(description="Empty when there is nothing more.")


# --- tracking ---------------------------------------------------------------------------------

class Category(BaseModel):
    category_id: str = Field(examples=["online-shops"])
    name: str
    partner_count: int


class CategoryList(BaseModel):
    categories: list[Category]


class Tier(BaseModel):
    min_amount_kopecks: Kopecks
    rate_type: RateType | None  # type: ignore[valid-type]
    rate_bps: int = Field(description="Basis points: 100 = 1 %.", examples=[500])
    fixed_kopecks: Kopecks


class RuleSet(BaseModel):
    version: int
    tiers: list[Tier]
    cap_kopecks: Kopecks = Field(description="0: no cap.")
    min_purchase_kopecks: Kopecks
    excluded_domains: list[str]
    app_orders_allowed: bool
    exclusive_loyalty: bool
    legal_entities_excluded: bool


class Partner(BaseModel):
    partner_id: str = Field(examples=["aliexpress"])
    name: str = Field(examples=["AliExpress"])
    category_id: str
    description: str
    terms_text: str
    site_url: str
    rules: RuleSet | None

    @classmethod
    def of(cls, p: tracking_pb2.Partner) -> Partner:
        rules = None
        if p.HasField("rules"):
            r = p.rules
            rules = RuleSet(
                version=r.version, cap_kopecks=r.cap_kopecks, min_purchase_kopecks=r.min_purchase_kopecks,
                excluded_domains=list(r.excluded_domains), app_orders_allowed=r.app_orders_allowed,
                exclusive_loyalty=r.exclusive_loyalty, legal_entities_excluded=r.legal_entities_excluded,
                tiers=[Tier(min_amount_kopecks=t.min_amount_kopecks, rate_bps=t.rate_bps, fixed_kopecks=t.fixed_kopecks,
                            rate_type=short(tracking_pb2.RateType.DESCRIPTOR, t.rate_type, "RATE_TYPE_"))
                       for t in r.tiers])
        return cls(partner_id=p.partner_id, name=p.name, category_id=p.category_id, description=p.description,
                   terms_text=p.terms_text, site_url=p.site_url, rules=rules)


class PartnerPage(BaseModel):
    partners: list[Partner]
    next_page_token: str = Field(description="Empty when there is nothing more.")
    total_size: int


class Decision(BaseModel):
    reason: DecisionReason | None  # type: ignore[valid-type]
    rule_version: int
    tier_index: int = Field(description="-1 when no tier applied.")
    amount_kopecks: Kopecks
    computed_kopecks: Kopecks = Field(description="Before the cap and the 1-rouble floor.")
    cashback_kopecks: Kopecks
    explanation: str = Field(examples=["5 % of 1,000.00 ₽"])

    @classmethod
    def of(cls, d: tracking_pb2.Decision) -> Decision:
        return cls(reason=short(tracking_pb2.DecisionReason.DESCRIPTOR, d.reason, "DECISION_REASON_"),
                   rule_version=d.rule_version, tier_index=d.tier_index, amount_kopecks=d.amount_kopecks,
                   computed_kopecks=d.computed_kopecks, cashback_kopecks=d.cashback_kopecks,
                   explanation=d.explanation)


class QuoteResponse(BaseModel):
    decision: Decision


class ClickResponse(BaseModel):
    click_id: str
    redirect_url: str


class Purchase(BaseModel):
    purchase_id: str
    partner_id: str
    network: str
    order_id: str
    part_id: str | None
    status: PurchaseStatus | None  # type: ignore[valid-type]
    amount_kopecks: Kopecks
    cashback_kopecks: Kopecks
    decision: Decision | None
    create_time: datetime | None
    confirm_time: datetime | None
    accrue_time: datetime | None
    # Cashback credited so far, net of reversals (a decline after crediting takes it back).
    credited_kopecks: Kopecks = 0

    @classmethod
    def of(cls, p: tracking_pb2.Purchase) -> Purchase:
        return cls(purchase_id=p.purchase_id, partner_id=p.partner_id, network=p.network, order_id=p.order_id,
                   part_id=p.part_id or None,
                   status=short(tracking_pb2.PurchaseStatus.DESCRIPTOR, p.status, "PURCHASE_STATUS_"),
                   amount_kopecks=p.amount_kopecks, cashback_kopecks=p.cashback_kopecks,
                   decision=Decision.of(p.decision) if p.HasField("decision") else None,
                   create_time=ts(p, "create_time"), confirm_time=ts(p, "confirm_time"),
                   accrue_time=ts(p, "accrue_time"), credited_kopecks=p.credited_kopecks)


class PurchaseReport(BaseModel):
    """One report of the shop about the purchase, as applied (or superseded by a newer one)."""

    status: PurchaseStatus | None  # type: ignore[valid-type]
    amount_kopecks: Kopecks
    event_time: datetime | None
    receive_time: datetime | None
    superseded: bool

    @classmethod
    def of(cls, r: tracking_pb2.PurchaseReport) -> PurchaseReport:
        return cls(status=short(tracking_pb2.PurchaseStatus.DESCRIPTOR, r.status, "PURCHASE_STATUS_"),
                   amount_kopecks=r.amount_kopecks, event_time=ts(r, "event_time"),
                   receive_time=ts(r, "receive_time"), superseded=r.superseded)


class PurchaseWithHistory(BaseModel):
    purchase: Purchase
    # The shop's reports in the order of its events: the purchase's status history.
    history: list[PurchaseReport]


class PurchasePage(BaseModel):
    purchases: list[Purchase]
    next_page_token: str = Field(description="Empty when there is nothing more.")


class ClaimRequest(Body):
    partner_id: str = Field(min_length=1, max_length=100, pattern=SLUG, examples=["ozon"])
    order_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"\S", examples=["OZ-100234"])
    order_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"},
                            description="YYYY-MM-DD, not in the future.", examples=["2026-01-15"])
    amount_kopecks: StrictKopecks = Field(gt=0, le=MAX_PURCHASE_KOPECKS, examples=[459900])
    comment: str = Field(default="", max_length=2000)


class Claim(BaseModel):
    claim_id: str
    user_id: str
    partner_id: str
    order_id: str
    order_date: str
    amount_kopecks: Kopecks
    comment: str
    status: ClaimStatus | None  # type: ignore[valid-type]
    decision_reason: str
    purchase_id: str | None
    create_time: datetime | None
    decide_time: datetime | None

    @classmethod
    def of(cls, c: tracking_pb2.Claim) -> Claim:
        return cls(claim_id=c.claim_id, user_id=c.user_id, partner_id=c.partner_id, order_id=c.order_id,
                   order_date=c.order_date, amount_kopecks=c.amount_kopecks, comment=c.comment,
                   status=short(tracking_pb2.ClaimStatus.DESCRIPTOR, c.status, "CLAIM_STATUS_"),
                   decision_reason=c.decision_reason, purchase_id=c.purchase_id or None,
                   create_time=ts(c, "create_time"), decide_time=ts(c, "decide_time"))


class ClaimPage(BaseModel):
    claims: list[Claim]
    next_page_token: str = Field(description="Empty when there is nothing more.")


class RejectClaimRequest(Body):
    reason: str = Field(min_length=1, max_length=2000, examples=["The order was cancelled by the shop."])


class PostbackAck(BaseModel):
    status: str = Field(examples=["ok"])
    outcome: PostbackOutcome | None  # type: ignore[valid-type]
    postback_id: str
    purchase_id: str | None


# --- redemption -------------------------------------------------------------------------------

class MobilePaymentRequest(Body):
    amount_kopecks: StrictKopecks = Field(ge=limits.MIN_PAYMENT_KOPECKS,
                                          le=limits.MAX_PAYMENT_KOPECKS, examples=[30000])


class MobilePayment(BaseModel):
    payment_id: str
    phone: str
    amount_kopecks: Kopecks
    status: PaymentStatus | None  # type: ignore[valid-type]
    failure_reason: str | None
    create_time: datetime | None
    complete_time: datetime | None

    @classmethod
    def of(cls, p: redemption_pb2.MobilePayment) -> MobilePayment:
        return cls(payment_id=p.payment_id, phone=p.phone, amount_kopecks=p.amount_kopecks,
                   status=short(redemption_pb2.PaymentStatus.DESCRIPTOR, p.status, "PAYMENT_STATUS_"),
                   failure_reason=p.failure_reason or None, create_time=ts(p, "create_time"),
                   complete_time=ts(p, "complete_time"))


class MobilePaymentPage(BaseModel):
    payments: list[MobilePayment]
    next_page_token: str = Field(description="Empty when there is nothing more.")


class CertificateRequest(Body):
    nominal_kopecks: StrictKopecks = Field(ge=limits.MIN_NOMINAL_KOPECKS,
                                           le=limits.MAX_NOMINAL_KOPECKS, multiple_of=100,
                                           description="Whole roubles, 100 to 80,000.", examples=[500000])


class Certificate(BaseModel):
    certificate_id: str
    code: str | None = Field(description="A bearer secret: shown to the certificate's current holder only, null "
                                         "otherwise (the transfer's answer, a replay after handing it over).")
    nominal_kopecks: Kopecks
    status: CertificateStatus | None  # type: ignore[valid-type]
    create_time: datetime | None
    redeem_time: datetime | None

    @classmethod
    def of(cls, c: redemption_pb2.Certificate) -> Certificate:
        return cls(certificate_id=c.certificate_id, code=c.code or None, nominal_kopecks=c.nominal_kopecks,
                   status=short(redemption_pb2.CertificateStatus.DESCRIPTOR, c.status, "CERTIFICATE_STATUS_"),
                   create_time=ts(c, "create_time"), redeem_time=ts(c, "redeem_time"))


class CertificatePage(BaseModel):
    certificates: list[Certificate]
    next_page_token: str = Field(description="Empty when there is nothing more.")


CertificateEventKind = proto_enum("CertificateEventKind", redemption_pb2.CertificateEventKind.DESCRIPTOR,
                                  "CERTIFICATE_EVENT_KIND_")


class CertificateEvent(BaseModel):
    kind: CertificateEventKind | None  # type: ignore[valid-type]
    event_time: datetime | None
    store_id: str | None = Field(description="REDEEMED: the store where it was applied.")


class CertificateHistory(BaseModel):
    certificate_id: str
    events: list[CertificateEvent] = Field(description="Oldest first. Codes are never part of the history.")

    @classmethod
    def of(cls, certificate_id: str, events: Any) -> CertificateHistory:
        return cls(certificate_id=certificate_id, events=[
            CertificateEvent(kind=short(redemption_pb2.CertificateEventKind.DESCRIPTOR, e.kind,
                                        "CERTIFICATE_EVENT_KIND_"),
                             event_time=ts(e, "event_time"), store_id=e.store_id or None)
            for e in events])


class TransferCertificateRequest(Body):
    to_phone: str = PHONE


class CertificateRedemptionRequest(Body):
    certificate_code: str = Field(max_length=64, pattern=CERTIFICATE_CODE, examples=["7KQM-2XWD-9HPT-4RNC-ZB3Z"],
                                  description="As printed; case, spaces and dashes do not matter.")
    sale_id: str = Field(min_length=1, max_length=128, examples=["SALE-2026-000123"])
    device_price_kopecks: StrictKopecks = Field(gt=limits.MIN_TO_PAY_KOPECKS,
                                          le=limits.MAX_PAYMENT_KOPECKS, examples=[4999000])


class CertificateRedemptionResponse(BaseModel):
    covered_kopecks: Kopecks
    to_pay_kopecks: Kopecks
    forfeited_kopecks: Kopecks = Field(description="Nominal the certificate could not use; not returned as points.")


class UssdRequest(Body):
    msisdn: str = PHONE
    request: str = Field(min_length=1, max_length=182, examples=["*100*1#"])


class UssdResponse(BaseModel):
    text: str


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    not_serving: list[str] = Field(default_factory=list)
