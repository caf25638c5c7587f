"""Credentials as the platform stores and checks them: a secret is kept only as its SHA-256, and
a configured list is `<id>:<sha256 hex>` pairs separated by commas (remove an entry to revoke).

Used by the gateway for its clients' API keys and by every gRPC service for service credentials
(DESIGN §3: internal systems — and our own services — call a service directly with a service
credential). A gRPC caller sends `authorization: Bearer <token>`; a service accepts the tokens
listed in `CASHBACK_SERVICE_CREDENTIALS`; a process sends its own `CASHBACK_SERVICE_TOKEN`.
Outside dev a service without credentials refuses to start. The standard health check and
reflection need none (load balancers and grpcurl probe them).

A credential names its caller, and each service lets a caller call only the methods it needs
(`PERMISSIONS`): the billing system reports service activations and nothing else, so its token
cannot move points; everything else is PERMISSION_DENIED. In dev (`CASHBACK_ENV=dev`) every caller
has its own token (`dev-<caller>-token`, each process presents its own), so the rules are exercised
by every test; the dev operator credential (caller `dev`, token `dev-service-token`, for tests and
`buf curl`) may call anything, in dev only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping

from services.common.config import ConfigError, cashback_env

DEV_SERVICE_CALLER = "dev"
DEV_SERVICE_TOKEN = "dev-service-token"
# Who calls our services: our own processes, and the operator's billing system.
CALLERS = ("gateway", "identity", "tracking", "ledger", "redemption", "billing")

# Per service (Runtime.name), per caller: the RPCs it may call. A caller not listed calls nothing.
# A new RPC that a caller needs is added here in the same change.
PERMISSIONS: dict[str, dict[str, frozenset[str]]] = {
    "identity": {
        "gateway": frozenset({
            "StartPhoneChallenge", "VerifyPhoneChallenge", "SignInWithOperator", "RefreshTokens", "Logout",
            "ListSigningKeys", "GetUser", "UpdateSpendingGoal", "DisableUser", "EnableUser", "StartEmailChallenge",
            "VerifyEmailChallenge", "ListNotifications", "ListDevOutbox"}),
        "tracking": frozenset({"GetUser", "GetReferrer", "SendNotification"}),
        "redemption": frozenset({"GetUser", "GetUserByPhone", "SendNotification"}),
    },
    "tracking": {
        "gateway": frozenset({
            "ListCategories", "ListPartners", "GetPartner", "QuoteCashback", "RecordClick", "IngestPostback",
            "IngestPostbacks", "ListPurchases", "GetPurchase", "GetPendingCashback", "FileClaim", "ListClaims",
            "ApproveClaim", "RejectClaim"}),
        "billing": frozenset({"ReportServiceActivation"}),
    },
    "ledger": {
        "gateway": frozenset({"GetBalance", "ListStatement"}),
        # Crediting cashback, taking it back (reversals), and what a credit repaid of a debt (sweeps).
        "tracking": frozenset({"CreateTransfer", "CreateTransfers", "ReverseCredit", "GetTransfer"}),
        # Holds and their settlement, certificates, the USSD balance.
        "redemption": frozenset({"CreateTransfer", "PostPendingTransfer", "VoidPendingTransfer", "GetTransfer",
                                 "GetBalance"}),
    },
    "redemption": {
        "gateway": frozenset({
            "CreateMobilePayment", "ListMobilePayments", "GetMobilePayment", "OrderCertificate", "ListCertificates",
            "TransferCertificate", "GetCertificateHistory", "RedeemCertificate", "AnswerUssd"}),
        "tracking": frozenset({"SweepCredit"}),
    },
}
AUTHORIZATION_KEY = "authorization"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_key(secret: str) -> str:
    """How credentials are stored: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def hashed(plain: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((principal, hash_key(secret)) for principal, secret in plain.items())


def parse_keys(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """`<principal id>:<sha256 hex of the key>` pairs, comma-separated."""
    pairs = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        principal, sep, digest = item.partition(":")
        digest = digest.strip().lower()
        if not sep or not principal.strip() or not _HEX64.match(digest):
            raise ConfigError(f"{name} must be '<id>:<sha256 hex>' pairs separated by commas, got {item!r}")
        pairs.append((principal.strip(), digest))
    return tuple(pairs)


def keys_from_env(name: str, dev: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The pairs in variable `name`; unset: the `dev` ones (plain) in dev, none elsewhere."""
    raw = os.environ.get(name)
    if raw is not None:
        return parse_keys(name, raw)
    return hashed(dev) if cashback_env() == "dev" else ()


def match_key(presented: str | None, keys: tuple[tuple[str, str], ...]) -> str | None:
    """The principal whose stored hash matches the presented key; every stored hash is compared,
    in constant time, so timing says nothing about which key came close."""
    if not presented:
        return None
    digest = hash_key(presented)
    found = None
    for principal, stored in keys:
        if hmac.compare_digest(stored, digest):
            found = principal
    return found


def dev_token(caller: str) -> str:
    return f"dev-{caller}-token"


class ServiceCredentials:
    """The service credentials a gRPC service accepts, and what each caller may call."""

    def __init__(self, keys: tuple[tuple[str, str], ...], *, dev: bool = False) -> None:
        self._keys = keys
        self._dev = dev

    @classmethod
    def from_env(cls) -> ServiceCredentials:
        dev_keys = {DEV_SERVICE_CALLER: DEV_SERVICE_TOKEN, **{caller: dev_token(caller) for caller in CALLERS}}
        keys = keys_from_env("CASHBACK_SERVICE_CREDENTIALS", dev_keys)
        if not keys:
            raise ConfigError("CASHBACK_SERVICE_CREDENTIALS is required outside dev: '<caller>:<sha256 hex of its "
                              "token>' pairs (echo -n TOKEN | sha256sum)")
        return cls(keys, dev=cashback_env() == "dev")

    def permits(self, caller: str, service: str, method: str) -> bool:
        """May `caller` call `method` (`/pkg.Service/Method`) of our service `service` (`ledger`)?"""
        if caller == DEV_SERVICE_CALLER and self._dev:
            return True
        return method.rpartition("/")[2] in PERMISSIONS.get(service, {}).get(caller, frozenset())

    def caller(self, authorization: str | bytes | None) -> str | None:
        """Who presents `authorization` (`Bearer <token>`), or None."""
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return match_key(token.strip(), self._keys)


def service_token(caller: str | None = None) -> str:
    """This process's own service token: `CASHBACK_SERVICE_TOKEN`; in dev, `caller`'s dev token (the
    dev operator's when no caller is named: tests and tools)."""
    configured = os.environ.get("CASHBACK_SERVICE_TOKEN")
    if configured:
        return configured
    if cashback_env() != "dev":
        raise ConfigError("CASHBACK_SERVICE_TOKEN is not set; a process calling our services must present its "
                          "own service token outside dev")
    return dev_token(caller) if caller else DEV_SERVICE_TOKEN
