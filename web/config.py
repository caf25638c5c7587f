"""Website settings, read once from the environment in `__main__` and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import cashback_env, env_str, settings_from_env

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
        settings = settings_from_env(cls, "web", computed={"env": env}, defaults={
            "secret": DEV_SECRET if env == "dev" else "", "cookie_secure": env != "dev",
            "public_gateway_url": env_str("WEB_GATEWAY_URL", cls.gateway_url)})
        if not settings.secret or (settings.secret == DEV_SECRET and env != "dev"):
            raise SystemExit("WEB_SECRET must be set outside dev (it signs the forms' CSRF tokens)")
        return settings
