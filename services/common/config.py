"""Environment helpers. Each service's `config.py` builds a frozen Settings from these."""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
VAR_DIR = ROOT / "var"

DEFAULT_PORTS = {"identity": 50051, "tracking": 50052, "ledger": 50053, "redemption": 50054}


class ConfigError(ValueError):
    """A configuration variable is malformed."""


S = TypeVar("S")
_SECRET_SUFFIXES = ("secret", "secrets", "pepper", "_token", "password", "key_pem", "_keys")


def settings_from_env(cls: type[S], service: str, *, computed: Mapping[str, object] | None = None,
                      defaults: Mapping[str, object] | None = None) -> S:
    """The one way a process reads its settings: every field of the dataclass `cls` from
    `<SERVICE>_<FIELD>`, parsed by the field's type, with the default written once, in the class
    (or in `defaults` where it depends on the environment, e.g. the platform's Redis URL).
    `computed` gives the fields that come from shared rules instead (database URL, listening
    port, upstream addresses: services/common/config.py)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = dict(computed or {})
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in values:
            continue
        default = (defaults or {}).get(field.name, field.default)
        if default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name} has no default: give it in computed or defaults")
        reader = _READERS.get(hints[field.name])
        if reader is None:
            raise TypeError(f"{cls.__name__}.{field.name}: no reader for {hints[field.name]!r}")
        values[field.name] = reader(f"{service.upper()}_{field.name.upper()}", default)
    return cls(**values)


def masked_settings(settings: object) -> list[tuple[str, str]]:
    """The effective settings as (field, value) for `python -m <process> config`: secrets masked,
    and a password in a URL too."""
    shown = []
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        text = str(value)
        if field.name.endswith(_SECRET_SUFFIXES) and value:
            text = "****"
        elif isinstance(value, str) and "://" in value and "@" in value:
            scheme, rest = value.split("://", 1)
            credentials, host = rest.rsplit("@", 1)
            text = f"{scheme}://{credentials.split(':', 1)[0]}:****@{host}"
        shown.append((field.name, text))
    return shown


def print_settings(settings: object) -> None:
    for name, value in masked_settings(settings):
        print(f"{name} = {value}")


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


_READERS: dict[Any, Callable[[str, Any], Any]] = {str: env_str, int: env_int, float: env_float, bool: env_bool}
