"""Gateway settings, read once from the environment in `__main__` and passed down."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from services.common.config import (
    ConfigError,
    cashback_env,
    env_str,
    redis_url,
    settings_from_env,
    upstream_address,
)
from services.common.credentials import hashed, keys_from_env

# Dev-only client credentials (documented in the README; never accepted outside `env == "dev"`).
DEV_STORE_KEYS = {"store-1": "dev-store-key"}
DEV_USSD_KEYS = {"ussd-gateway": "dev-ussd-key"}
DEV_SUPPORT_KEYS = {"support-dev": "dev-support-key"}

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(name: str, raw: str) -> Networks:
    """Comma-separated addresses or CIDR networks (`10.0.0.0/8, 127.0.0.1`)."""
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in raw.split(",") if item.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be IP addresses or networks separated by commas, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    env: str = "prod"
    identity_address: str = field(default_factory=lambda: upstream_address("identity"))
    tracking_address: str = field(default_factory=lambda: upstream_address("tracking"))
    ledger_address: str = field(default_factory=lambda: upstream_address("ledger"))
    redemption_address: str = field(default_factory=lambda: upstream_address("redemption"))
    # "" tries a local Redis and goes on without; "off" runs without on purpose.
    redis_url: str = ""
    rpc_deadline_seconds: float = 5.0
    readiness_timeout_seconds: float = 1.0
    max_body_bytes: int = 64 * 1024
    # Client credentials: (principal id, sha256 hex of the key).
    store_keys: tuple[tuple[str, str], ...] = ()
    ussd_keys: tuple[tuple[str, str], ...] = ()
    support_keys: tuple[tuple[str, str], ...] = ()
    # Access tokens: expected issuer and audience when identity does not say.
    token_issuer: str = "cashback-identity"
    token_audience: str = "cashback"
    # At most one refetch of identity's signing keys per this many seconds for unknown key ids.
    key_refresh_min_interval_seconds: float = 5.0
    # Requests per minute; 0 switches a limit off.
    rate_limit_per_user: int = 600
    rate_limit_per_address: int = 1200
    idempotency_ttl_seconds: int = 24 * 3600
    # Proxies whose X-Forwarded-For is believed (addresses or networks); none by default: the client
    # address is the connection's peer.
    trusted_proxies: Networks = ()
    # Postbacks that arrive together go to tracking in one IngestPostbacks call of at most this
    # many, with at most this many calls in flight (1 and a high number: one call per postback).
    postback_batch_size: int = 200
    postback_batches_in_flight: int = 2

    @classmethod
    def from_env(cls) -> Settings:
        return settings_from_env(cls, "gateway", computed={
            "env": cashback_env(), "redis_url": redis_url(),
            **{f"{service}_address": upstream_address(service, "gateway")
               for service in ("identity", "tracking", "ledger", "redemption")},
            "store_keys": keys_from_env("GATEWAY_STORE_KEYS", DEV_STORE_KEYS),
            "ussd_keys": keys_from_env("GATEWAY_USSD_KEYS", DEV_USSD_KEYS),
            "support_keys": keys_from_env("GATEWAY_SUPPORT_KEYS", DEV_SUPPORT_KEYS),
            "trusted_proxies": parse_networks("GATEWAY_TRUSTED_PROXIES", env_str("GATEWAY_TRUSTED_PROXIES", "")),
        })

    @classmethod
    def dev_keys(cls) -> dict[str, tuple[tuple[str, str], ...]]:
        """The dev credentials, hashed, for settings built in code (tests)."""
        return {"store_keys": hashed(DEV_STORE_KEYS), "ussd_keys": hashed(DEV_USSD_KEYS),
                "support_keys": hashed(DEV_SUPPORT_KEYS)}
