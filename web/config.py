"""Website settings, read once from the environment in `__main__` and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import cashback_env, env_bool, env_float, env_int, env_str

# Signs the CSRF tokens of the forms. Dev only; outside dev WEB_SECRET must be set.
DEV_SECRET = "dev-web-secret"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    env: str = "prod"
    # Where the website calls the gateway (server to server).
    gateway_url: str = "http://127.0.0.1:8080"
    # Where the browser reaches the gateway (the go-to-shop link, the API docs).
    public_gateway_url: str = "http://127.0.0.1:8080"
    secret: str = DEV_SECRET
    # Session cookies: Secure outside dev (browsers send them over HTTPS only); a Domain shared with
    # the gateway when the two live on sibling hosts (the gateway reads the access cookie on /go links).
    cookie_secure: bool = True
    cookie_domain: str = ""
    gateway_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        env = cashback_env()
        secret = env_str("WEB_SECRET", DEV_SECRET if env == "dev" else "")
        if not secret or (secret == DEV_SECRET and env != "dev"):
            raise SystemExit("WEB_SECRET must be set outside dev (it signs the forms' CSRF tokens)")
        gateway_url = env_str("WEB_GATEWAY_URL", "http://127.0.0.1:8080")
        return cls(
            host=env_str("WEB_HOST", "127.0.0.1"),
            port=env_int("WEB_PORT", 8000),
            env=env,
            gateway_url=gateway_url,
            public_gateway_url=env_str("WEB_PUBLIC_GATEWAY_URL", gateway_url),
            secret=secret,
            cookie_secure=env_bool("WEB_COOKIE_SECURE", env != "dev"),
            cookie_domain=env_str("WEB_COOKIE_DOMAIN", ""),
            gateway_timeout_seconds=env_float("WEB_GATEWAY_TIMEOUT_SECONDS", 10.0),
        )
