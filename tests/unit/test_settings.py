"""One way to configure: every process reads each setting from `<PROCESS>_<FIELD>`, its default
written once in its Settings class; `python -m <process> config` shows them with secrets masked."""

from __future__ import annotations

import dataclasses
import importlib
import typing

import pytest

from services.common.config import ConfigError, masked_settings

PROCESSES = {"tracking": "services.tracking.config", "identity": "services.identity.config",
             "ledger": "services.ledger.config", "redemption": "services.redemption.config",
             "gateway": "gateway.config", "web": "web.config"}
# Fields that come from shared rules instead (database URL, ports, upstream addresses, credentials).
COMPUTED = {"database_url", "port", "env", "redis_url", "identity_address", "tracking_address", "ledger_address",
            "redemption_address", "store_keys", "ussd_keys", "support_keys", "trusted_proxies"}


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_every_plain_setting_is_read_from_its_variable(process, monkeypatch):
    monkeypatch.setenv("CASHBACK_ENV", "dev")
    settings_type = importlib.import_module(PROCESSES[process]).Settings
    hints = typing.get_type_hints(settings_type)
    wanted = {}
    for field in dataclasses.fields(settings_type):
        if field.name in COMPUTED:
            continue
        value = {int: 7, float: 2.5, bool: True, str: "/tmp/set-by-env"}[hints[field.name]]
        if field.name in {"catalogue_path"}:
            continue  # a path the service opens at start: read like the others, checked elsewhere
        monkeypatch.setenv(f"{process.upper()}_{field.name.upper()}", str(value).lower())
        wanted[field.name] = value
    settings = settings_type.from_env()
    assert {name: getattr(settings, name) for name in wanted} == wanted


def test_a_malformed_number_names_its_variable(monkeypatch):
    monkeypatch.setenv("CASHBACK_ENV", "dev")
    monkeypatch.setenv("TRACKING_AUDIT_FLUSH_BATCH", "many")
    from services.tracking.config import Settings

    with pytest.raises(ConfigError, match="TRACKING_AUDIT_FLUSH_BATCH"):
        Settings.from_env()


def test_config_masks_secrets_and_passwords_in_urls(monkeypatch):
    monkeypatch.setenv("CASHBACK_ENV", "dev")
    monkeypatch.setenv("TRACKING_DIRECT_SECRETS", "s3cret-one,s3cret-two")
    monkeypatch.setenv("TRACKING_DATABASE_URL", "postgresql+asyncpg://tracking:hunter2@db:5432/tracking")
    from services.tracking.config import Settings

    shown = dict(masked_settings(Settings.from_env()))
    assert shown["direct_secrets"] == "****" and "s3cret" not in str(shown)
    assert shown["database_url"] == "postgresql+asyncpg://tracking:****@db:5432/tracking"
    assert shown["accrual_delay_seconds"] == "86400"
