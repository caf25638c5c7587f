"""Credentials as the platform stores and checks them: a secret is kept only as its SHA-256, and
a configured list is `<id>:<sha256 hex>` pairs separated by commas (remove an entry to revoke).

Used by the gateway for its clients' API keys and by every gRPC service for service credentials
(DESIGN §3: internal systems — and our own services — call a service directly with a service
credential). A gRPC caller sends `authorization: Bearer <token>`; a service accepts the tokens
listed in `CASHBACK_SERVICE_CREDENTIALS`; a process sends its own `CASHBACK_SERVICE_TOKEN`. In dev
(`CASHBACK_ENV=dev`) both default to one dev credential (caller `dev`, token `dev-service-token`);
outside dev a service without credentials refuses to start. The standard health check and
reflection need none (load balancers and grpcurl probe them).
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


class ServiceCredentials:
    """The service credentials a gRPC service accepts."""

    def __init__(self, keys: tuple[tuple[str, str], ...]) -> None:
        self._keys = keys

    @classmethod
    def from_env(cls) -> ServiceCredentials:
        keys = keys_from_env("CASHBACK_SERVICE_CREDENTIALS", {DEV_SERVICE_CALLER: DEV_SERVICE_TOKEN})
        if not keys:
            raise ConfigError("CASHBACK_SERVICE_CREDENTIALS is required outside dev: '<caller>:<sha256 hex of its "
                              "token>' pairs (echo -n TOKEN | sha256sum)")
        return cls(keys)

    def caller(self, authorization: str | bytes | None) -> str | None:
        """Who presents `authorization` (`Bearer <token>`), or None."""
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return match_key(token.strip(), self._keys)


def service_token() -> str:
    """This process's own service token (`CASHBACK_SERVICE_TOKEN`; the dev one in dev)."""
    return os.environ.get("CASHBACK_SERVICE_TOKEN") or (DEV_SERVICE_TOKEN if cashback_env() == "dev" else "")
