from __future__ import annotations

from dataclasses import dataclass

from services.common.config import (
    cashback_env,
    database_url,
    env_float,
    env_int,
    env_str,
    listen_port,
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
        return cls(
            database_url=database_url("redemption"),
            host=env_str("REDEMPTION_HOST", "127.0.0.1"),
            port=listen_port("redemption"),
            env=env_str("REDEMPTION_ENV", cashback_env()),  # "dev" only with CASHBACK_ENV=dev (serve checks)
            identity_address=env_str("REDEMPTION_IDENTITY_ADDRESS", upstream_address("identity")),
            ledger_address=env_str("REDEMPTION_LEDGER_ADDRESS", upstream_address("ledger")),
            billing_url=env_str("REDEMPTION_BILLING_URL", DEV_BILLING_URL),
            billing_timeout_seconds=env_float("REDEMPTION_BILLING_TIMEOUT_SECONDS", 5.0),
            reconcile_interval_seconds=env_float("REDEMPTION_RECONCILE_INTERVAL_SECONDS", 5.0),
            claim_lease_seconds=env_float("REDEMPTION_CLAIM_LEASE_SECONDS", 30.0),
            hold_timeout_seconds=env_int("REDEMPTION_HOLD_TIMEOUT_SECONDS", 7 * 24 * 3600),
        )
