"""Environment helpers. Each service's `config.py` builds a frozen Settings from these."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAR_DIR = ROOT / "var"

DEFAULT_PORTS = {"identity": 50051, "tracking": 50052, "ledger": 50053, "redemption": 50054}


class ConfigError(ValueError):
    """A configuration variable is malformed."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def cashback_env() -> str:
    """`dev` enables the dev sinks and dev secrets; anything else is production-like."""
    return env_str("CASHBACK_ENV", "prod")


def require_outside_dev(env: str, name: str, value: str, dev_value: str = "") -> None:
    """Outside dev, `name` must be configured, and not to its dev value: a half-configured production
    process stops at start, naming the variable, instead of running on a dev default."""
    if env != "dev" and (not value or value == dev_value):
        state = "is the dev value" if value else "is not set"
        raise ConfigError(f"{name} {state}; it must be configured when CASHBACK_ENV={env!r} (not dev)")


def check_no_dev_override() -> None:
    """A per-service `<SERVICE>_ENV` cannot switch dev behaviour on (dev secrets, the dev sink) while
    the platform runs in production."""
    env = cashback_env()
    if env == "dev":
        return
    for service in (*DEFAULT_PORTS, "gateway"):
        name = f"{service.upper()}_ENV"
        if os.environ.get(name, "").strip().lower() == "dev":
            raise ConfigError(f"{name}=dev is refused while CASHBACK_ENV={env!r}: dev behaviour is for the whole "
                              "platform or none of it")


def database_url(service: str) -> str:
    """`<SERVICE>_DATABASE_URL`, or a SQLite file under var/ (the embedded default)."""
    url = os.environ.get(f"{service.upper()}_DATABASE_URL")
    if url:
        return url
    VAR_DIR.mkdir(exist_ok=True)
    return f"sqlite+aiosqlite:///{VAR_DIR / (service + '.db')}"


def listen_port(service: str) -> int:
    return env_int(f"{service.upper()}_PORT", DEFAULT_PORTS[service])


def upstream_address(service: str, caller: str | None = None) -> str:
    """Where another service listens: `<CALLER>_<SERVICE>_ADDRESS`, else `<SERVICE>_ADDRESS`,
    else localhost and its standard port."""
    default = env_str(f"{service.upper()}_ADDRESS", f"127.0.0.1:{DEFAULT_PORTS[service]}")
    return env_str(f"{caller.upper()}_{service.upper()}_ADDRESS", default) if caller else default


def redis_url() -> str:
    """`REDIS_URL`; empty means: try a local Redis, and work without one if none answers."""
    return env_str("REDIS_URL", "")
