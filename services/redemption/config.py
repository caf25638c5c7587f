from __future__ import annotations

from dataclasses import dataclass

from services.common.config import (
    cashback_env,
    database_url,
    listen_port,
    settings_from_env,
    upstream_address,
)

DEV_BILLING_URL = "http://127.0.0.1:8090"


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 50054
    env: str = "prod"
    identity_address: str = "127.0.0.1:50051"
    ledger_address: str = "127.0.0.1:50053"
    # The operator's billing (in dev and tests: `python -m fakes.billing`, the default address).
    billing_url: str = DEV_BILLING_URL
    # Deadline of one billing call; past it the payment stays PROCESSING and is settled later.
    billing_timeout_seconds: float = 5.0
    # How often the reconciler looks for payments and certificates left unfinished.
    reconcile_interval_seconds: float = 5.0
    # How long a use case in flight owns its payment / certificate before the reconciler may take it
    # over (longer than a hold + a billing call + a post); also the reconciler's own lease.
    claim_lease_seconds: float = 30.0
    # Lifetime of the ledger hold of a mobile payment. Far longer than any billing outage we expect
    # to ride out: a hold that expires while billing may still apply the top-up is the one case that
    # needs a person (logged as an error).
    hold_timeout_seconds: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls) -> Settings:
        # env: "dev" only with CASHBACK_ENV=dev (serve checks).
        return settings_from_env(cls, "redemption", computed={
            "database_url": database_url("redemption"), "port": listen_port("redemption"),
            "identity_address": upstream_address("identity", "redemption"),
            "ledger_address": upstream_address("ledger", "redemption"),
        }, defaults={"env": cashback_env()})
