from __future__ import annotations

from dataclasses import dataclass, replace

from services.common.config import (
    cashback_env,
    database_url,
    listen_port,
    redis_url,
    settings_from_env,
)

DEV_CODE_PEPPER = "dev-code-pepper"
# The public half of the dev operator SSO key (the private half is in fakes/operator_sso.py).
# Used only when env == "dev" and no key is configured; never outside dev.
DEV_OPERATOR_SSO_PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAmUgC+bSuDcFHO6WI3f1o0aJwJ8sxCto9m0ismrQVF2w=\n"
    "-----END PUBLIC KEY-----\n"
)
DEV_OPERATOR_SSO_ISSUER = "operator-sso-dev"


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 50051
    env: str = "prod"
    # "" = a local Redis if one answers; "off" = none (database-counted rate limits).
    redis_url: str = ""
    redis_prefix: str = "identity:"
    # Sign-in codes.
    code_ttl_seconds: int = 600
    resend_cooldown_seconds: int = 60
    max_code_attempts: int = 5
    code_pepper: str = DEV_CODE_PEPPER
    # Wrong codes for one phone from one client address (across its codes) before that address is
    # locked out of the phone, and for how long. The phone itself is never locked by wrong codes.
    phone_max_failures: int = 10
    phone_lock_seconds: int = 3600
    # Wrong codes for one phone from every address; past the budget, each code of the phone gets one
    # try only, for the window (0 = no budget).
    phone_guess_budget: int = 20
    phone_guess_window_seconds: int = 86400
    # Abuse limits (codes sent); 0 switches a limit off.
    phone_codes_per_hour: int = 5
    phone_codes_per_day: int = 10
    address_codes_per_hour: int = 30
    sms_per_minute: int = 600
    email_codes_per_hour: int = 5
    # Tokens.
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    token_issuer: str = "cashback-identity"
    token_audience: str = "cashback"
    # Signing-key rotation: a new key every `signing_key_lifetime_seconds` (0 = only by the admin
    # command), published `signing_key_publish_seconds` before it signs; replicas re-read the keys
    # and run the rotation check every `signing_key_check_seconds`. An old key stays published until
    # the tokens it signed have expired.
    signing_key_lifetime_seconds: int = 30 * 24 * 3600
    signing_key_publish_seconds: int = 60
    signing_key_check_seconds: float = 30.0
    # The program's operator: numbers in its ranges are its subscribers.
    operator_name: str = "MTS"
    # Operator SSO assertions (EdDSA JWT). Empty key: dev key in dev, SSO sign-in refused otherwise.
    operator_sso_public_key_pem: str = ""
    operator_sso_issuer: str = DEV_OPERATOR_SSO_ISSUER
    operator_sso_audience: str = "cashback"
    # Delivery. Empty sms_url / smtp_host: no provider (in dev the sink alone receives messages).
    sms_url: str = ""
    sms_token: str = ""
    sms_sender: str = "Cashback"
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    email_from: str = "cashback@localhost"
    outbox_poll_seconds: float = 0.5
    # Clean-up: expired challenges, idle code records, sent outbox rows and spent assertions are
    # deleted this long after they stop mattering, by a job running every `cleanup_interval_seconds`.
    record_retention_seconds: int = 24 * 3600
    cleanup_interval_seconds: float = 300.0

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def sso_public_key_pem(self) -> str:
        if self.operator_sso_public_key_pem:
            return self.operator_sso_public_key_pem
        return DEV_OPERATOR_SSO_PUBLIC_KEY_PEM if self.is_dev else ""

    @classmethod
    def from_env(cls) -> Settings:
        settings = settings_from_env(cls, "identity", computed={
            "database_url": database_url("identity"), "port": listen_port("identity"), "env": cashback_env(),
        }, defaults={"redis_url": redis_url()})
        # A PEM in one environment line has its newlines written as \n.
        return replace(settings, operator_sso_public_key_pem=settings.operator_sso_public_key_pem.replace("\\n", "\n"))
