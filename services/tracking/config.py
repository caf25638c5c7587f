from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.config import (
    ConfigError,
    cashback_env,
    database_url,
    listen_port,
    redis_url,
    settings_from_env,
    upstream_address,
)
from services.tracking.postbacks import NetworkConfig, parse_allow_list

DEV_DIRECT_SECRET = "dev-direct-secret"
DEV_ADMITAD_SECRET = "dev-admitad-secret"
DEFAULT_CATALOGUE = str(Path(__file__).with_name("data") / "catalogue.json")


def _secrets(raw: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in raw.split(",") if s.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 50052
    env: str = "prod"
    redis_url: str = ""
    redis_prefix: str = "tracking:"
    identity_address: str = "127.0.0.1:50051"
    ledger_address: str = "127.0.0.1:50053"
    # Where credits of partner purchases are offered for the automatic sweep to the phone bill.
    # Empty (the dataclass default, for tests of tracking alone): no sweep; from_env gives the
    # standard address.
    redemption_address: str = ""
    # Cashback is credited this long after confirmation (0 in dev demos).
    accrual_delay_seconds: int = 86400
    # A purchase still pending this many days after it was first reported expires.
    pending_expiry_days: int = 90
    # Comma-separated; two during a rotation. Empty: the dev secret in dev, a start-up error otherwise.
    direct_secrets: str = ""
    admitad_secret: str = ""
    postback_tolerance_seconds: int = 300
    # Optional IP allow-lists (comma-separated CIDR blocks or addresses); empty: any address.
    direct_allowed_ips: str = ""
    admitad_allowed_ips: str = ""
    # How long a relayed outbox message stays claimed before another attempt may take it.
    outbox_lease_seconds: float = 30.0
    # Fast-path duplicates' audit records are moved from Redis to the database in batches this big.
    audit_flush_batch: int = 500
    catalogue_path: str = DEFAULT_CATALOGUE
    referral_bonus_kopecks: int = 3000
    # Refused postbacks (bad signature, malformed…) stored per client address and minute; past it they
    # are answered 429 and not stored (0: no limit).
    refused_postbacks_per_minute: int = 120
    # How often the accrual/expiry job looks for due purchases when it found none.
    job_interval_seconds: float = 1.0

    def networks(self) -> dict[str, NetworkConfig]:
        """The postback networks and their secrets. Dev secrets are used only when env is dev."""
        dev = self.env == "dev"
        configured = {
            "direct": _secrets(self.direct_secrets) or ((DEV_DIRECT_SECRET,) if dev else ()),
            "admitad": _secrets(self.admitad_secret) or ((DEV_ADMITAD_SECRET,) if dev else ()),
        }
        allowed = {}
        for name, text in (("direct", self.direct_allowed_ips), ("admitad", self.admitad_allowed_ips)):
            try:
                allowed[name] = parse_allow_list(text)
            except ValueError as exc:
                raise ConfigError(f"TRACKING_{name.upper()}_ALLOWED_IPS: {exc}") from exc
        for name, secrets in configured.items():
            if not secrets:
                raise ConfigError(f"TRACKING_{name.upper()}_SECRET{'S' if name == 'direct' else ''} must be set "
                                  f"outside dev")
            if not dev and ({DEV_DIRECT_SECRET, DEV_ADMITAD_SECRET} & set(secrets)):
                raise ConfigError(f"the dev secret of network {name} may be used only with CASHBACK_ENV=dev")
        return {name: NetworkConfig(name, secrets, self.postback_tolerance_seconds, allowed[name])
                for name, secrets in configured.items()}

    @classmethod
    def from_env(cls) -> Settings:
        return settings_from_env(cls, "tracking", computed={
            "database_url": database_url("tracking"), "port": listen_port("tracking"),
            "identity_address": upstream_address("identity", "tracking"),
            "ledger_address": upstream_address("ledger", "tracking"),
            "redemption_address": upstream_address("redemption", "tracking"),
        }, defaults={"env": cashback_env(), "redis_url": redis_url()})
