"""Postback formats and their authentication, with no I/O: raw request in, a `Report` out (or a
domain error saying why not).

- `direct` (signed JSON): POST body as in DESIGN.md §3, header
  `X-Cashback-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
  The signature is checked first (against every configured secret: two during a rotation), then
  the timestamp (within `tolerance_seconds` of now, either side). Several `v1=` entries may be
  given (the sender signs with both secrets while rotating).
- `admitad` (affiliate-network style): GET query or POST form (`application/x-www-form-urlencoded`)
  with `order_id`, `status`, `order_sum` (the order amount), `payment_sum` (the network's
  commission, kept as such: never taken for the amount), `currency`, `subid`, `position_id`, `time`,
  authenticated by the per-network shared secret in the `secret` parameter (the network
  puts it into the postback URL template; any configured secret matches, for rotation). Such a
  network does not sign a timestamp, so there is no replay window: replays are harmless because
  ingestion is idempotent. Amounts are roubles with at most two decimals ("1234.50"), converted
  to kopecks exactly (Decimal), never through floats.

Either network may also have an IP allow-list (`NetworkConfig.allowed`, CIDR blocks): a postback
from any other address (the gateway passes the client's address) is refused as unauthenticated
before its signature is even looked at. No list: any address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from services.tracking.domain import (
    MAX_AMOUNT_KOPECKS,
    MAX_ID_LENGTH,
    AddressNotAllowed,
    Channel,
    CustomerType,
    NetworkUnknown,
    PostbackMalformed,
    PurchaseFacts,
    ReportedStatus,
    SignatureInvalid,
    TimestampOutOfWindow,
)

SIGNATURE_HEADER = "x-cashback-signature"
_AMOUNT = re.compile(r"^\d{1,12}(\.\d{1,2})?$")
_STATUS_MAPS: dict[str, dict[str, ReportedStatus]] = {
    "direct": {s.value: s for s in ReportedStatus},
    "admitad": {
        "pending": ReportedStatus.PENDING, "approved": ReportedStatus.APPROVED,
        "declined": ReportedStatus.DECLINED, "rejected": ReportedStatus.DECLINED,
    },
}


@dataclass(frozen=True)
class RawPostback:
    network: str
    http_method: str
    query_string: str
    body: bytes
    headers: dict[str, str]
    remote_address: str


@dataclass(frozen=True)
class Report:
    """One postback, parsed and authenticated: what the partner says about one order (part)."""

    network: str
    order_id: str
    part_id: str
    status: ReportedStatus
    facts: PurchaseFacts
    click_id: str
    partner_hint: str  # our partner slug when the sender names it; the click decides otherwise
    event_time: datetime | None
    commission_kopecks: int = 0

    @property
    def fingerprint(self) -> str:
        """Equal for byte-identical replays: everything the report says that matters — which shop
        (named, or through its click), order part, status, amount, commission and event time."""
        when = self.event_time.isoformat() if self.event_time else ""
        raw = "\x1f".join([self.network, self.partner_hint, self.click_id, self.order_id, self.part_id,
                           self.status.value, str(self.facts.amount_kopecks), str(self.commission_kopecks), when])
        return hashlib.sha256(raw.encode()).hexdigest()


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    secrets: tuple[str, ...]
    tolerance_seconds: int = 300
    allowed: tuple[IpNetwork, ...] = ()  # empty: any address

    def admits(self, address: str) -> bool:
        if not self.allowed:
            return True
        try:
            ip = ipaddress.ip_address(address.strip().removeprefix("[").split("]")[0])
        except ValueError:
            return False
        return any(ip in block for block in self.allowed)


def parse_allow_list(text: str) -> tuple[IpNetwork, ...]:
    """"10.0.0.0/8, 192.0.2.7" → the blocks (a bare address is a /32 or /128). Raises ValueError."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip())


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Cashback-Signature` header value for a `direct` postback."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def parse(raw: RawPostback, networks: dict[str, NetworkConfig], now: datetime) -> Report:
    config = networks.get(raw.network)
    if config is None:
        raise NetworkUnknown(f"no postback network {raw.network!r}", network=raw.network)
    if not config.admits(raw.remote_address):
        raise AddressNotAllowed(f"postbacks of network {raw.network} are not accepted from this address")
    if raw.network == "direct":
        return _parse_direct(raw, config, now)
    return _parse_network_form(raw, config)


# --- direct -------------------------------------------------------------------------------------

def verify_signature(header: str, body: bytes, secrets: tuple[str, ...], now: datetime, tolerance: int) -> None:
    timestamp, candidates = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureInvalid("missing or malformed X-Cashback-Signature header")
    expected = [hmac.new(s.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest() for s in secrets]
    if not any(hmac.compare_digest(e, c) for e in expected for c in candidates):
        raise SignatureInvalid("the signature does not match")
    if abs(int(now.timestamp()) - timestamp) > tolerance:
        raise TimestampOutOfWindow(f"signature timestamp is more than {tolerance} s from now")


def _parse_direct(raw: RawPostback, config: NetworkConfig, now: datetime) -> Report:
    verify_signature(raw.headers.get(SIGNATURE_HEADER, ""), raw.body, config.secrets, now, config.tolerance_seconds)
    if raw.http_method.upper() != "POST":
        raise PostbackMalformed("direct postbacks are POSTed")
    try:
        data = json.loads(raw.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PostbackMalformed("body is not JSON") from exc
    if not isinstance(data, dict):
        raise PostbackMalformed("body must be a JSON object")
    amount = data.get("amount_kopecks")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_AMOUNT_KOPECKS:
        raise PostbackMalformed("amount_kopecks must be a non-negative integer", field="amount_kopecks")
    other_loyalty = data.get("other_loyalty_used", False)
    if not isinstance(other_loyalty, bool):
        raise PostbackMalformed("other_loyalty_used must be true or false", field="other_loyalty_used")
    _check_currency(data.get("currency"))
    return Report(
        network=raw.network,
        order_id=_ident(data.get("order_id"), "order_id", required=True),
        part_id=_ident(data.get("part_id"), "part_id"),
        status=_status("direct", data.get("status")),
        facts=PurchaseFacts(
            amount_kopecks=amount,
            channel=_channel(data.get("channel")),
            customer_type=_customer(data.get("customer_type")),
            destination_domain=_text(data.get("destination_domain"), "destination_domain"),
            other_loyalty_used=other_loyalty,
        ),
        click_id=_ident(data.get("click_id"), "click_id"),
        partner_hint=_ident(data.get("partner_id"), "partner_id"),
        event_time=_time(data.get("event_time")),
    )


# --- affiliate-network form ---------------------------------------------------------------------

def _parse_network_form(raw: RawPostback, config: NetworkConfig) -> Report:
    params = _form(raw)
    given = params.get("secret", "")
    if not given or not any(hmac.compare_digest(given.encode(), s.encode()) for s in config.secrets):
        raise SignatureInvalid("the network secret does not match")
    other = params.get("other_loyalty_used", "").lower()
    _check_currency(params.get("currency"))
    return Report(
        network=raw.network,
        order_id=_ident(params.get("order_id"), "order_id", required=True),
        part_id=_ident(params.get("position_id"), "position_id"),
        status=_status(raw.network, params.get("status")),
        facts=PurchaseFacts(
            amount_kopecks=roubles_to_kopecks(params.get("order_sum", ""), "order_sum"),
            channel=_channel(params.get("channel")),
            customer_type=_customer(params.get("customer_type")),
            destination_domain=_text(params.get("destination_domain"), "destination_domain"),
            other_loyalty_used=other in {"1", "true", "yes"},
        ),
        click_id=_ident(params.get("subid"), "subid"),
        partner_hint=_ident(params.get("partner_id"), "partner_id"),
        event_time=_time(params.get("time")),
        commission_kopecks=roubles_to_kopecks(params["payment_sum"], "payment_sum") if params.get("payment_sum")
        else 0,
    )


def _form(raw: RawPostback) -> dict[str, str]:
    method = raw.http_method.upper()
    if method == "GET":
        text = raw.query_string
    elif method == "POST":
        try:
            text = raw.body.decode() if raw.body else raw.query_string
        except UnicodeDecodeError as exc:
            raise PostbackMalformed("form body is not UTF-8") from exc
    else:
        raise PostbackMalformed("postbacks are GET or POST")
    try:
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    except ValueError as exc:
        raise PostbackMalformed("unreadable parameters") from exc
    return {key: values[-1] for key, values in parsed.items()}


def roubles_to_kopecks(text: str, name: str = "order_sum") -> int:
    """"1234.50" → 123450, exactly. More than two decimals, signs, exponents: malformed."""
    value = (text or "").strip()
    if not _AMOUNT.match(value):
        raise PostbackMalformed(f"{name} must be roubles with at most two decimals, e.g. 1234.50", field=name)
    kopecks = int(Decimal(value) * 100)
    if kopecks > MAX_AMOUNT_KOPECKS:
        raise PostbackMalformed(f"{name} is too large", field=name)
    return kopecks


# --- fields -------------------------------------------------------------------------------------

def _check_currency(value: Any) -> None:
    if value not in (None, "", "RUB", "rub"):
        raise PostbackMalformed("only RUB amounts are accepted", field="currency")


def _ident(value: Any, name: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise PostbackMalformed(f"{name} is required", field=name)
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise PostbackMalformed(f"{name} must be a string of at most {MAX_ID_LENGTH} characters", field=name)
    return value.strip()


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 253:
        raise PostbackMalformed(f"{name} must be a short string", field=name)
    return value


def _status(network: str, value: Any) -> ReportedStatus:
    mapped = _STATUS_MAPS.get(network, _STATUS_MAPS["admitad"]).get(str(value or "").strip().lower())
    if mapped is None:
        raise PostbackMalformed(f"unknown status {value!r}", field="status")
    return mapped


def _channel(value: Any) -> Channel:
    text = str(value or "web").strip().lower()
    if text not in {"web", "app"}:
        raise PostbackMalformed("channel must be web or app", field="channel")
    return Channel.APP if text == "app" else Channel.WEB


def _customer(value: Any) -> CustomerType:
    text = str(value or "individual").strip().lower()
    if text not in {"individual", "legal_entity"}:
        raise PostbackMalformed("customer_type must be individual or legal_entity", field="customer_type")
    return CustomerType.LEGAL_ENTITY if text == "legal_entity" else CustomerType.INDIVIDUAL


def _time(value: Any) -> datetime | None:
    """Unix seconds (number or digits) or ISO 8601 / "YYYY-MM-DD HH:MM:SS" (UTC when no zone)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(int(value), UTC)
        text = str(value).strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise PostbackMalformed("time must be unix seconds or ISO 8601", field="time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
