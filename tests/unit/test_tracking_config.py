"""Postback secrets: dev defaults only in dev, configured secrets everywhere else."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.tracking.config import Settings


def test_dev_uses_the_documented_dev_secrets():
    networks = Settings(database_url="sqlite+aiosqlite://", env="dev").networks()
    assert networks["direct"].secrets == ("dev-direct-secret",)
    assert networks["admitad"].secrets == ("dev-admitad-secret",)
    assert networks["direct"].tolerance_seconds == 300


def test_outside_dev_secrets_must_be_configured():
    with pytest.raises(ConfigError):
        Settings(database_url="x", env="prod").networks()
    with pytest.raises(ConfigError):
        Settings(database_url="x", env="prod", direct_secrets="dev-direct-secret", admitad_secret="a").networks()


def test_two_direct_secrets_during_a_rotation():
    networks = Settings(database_url="x", env="prod", direct_secrets="new, old", admitad_secret="a").networks()
    assert networks["direct"].secrets == ("new", "old")


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRACKING_ACCRUAL_DELAY_SECONDS", "0")
    monkeypatch.setenv("TRACKING_DIRECT_SECRETS", "s1,s2")
    monkeypatch.setenv("TRACKING_PORT", "6000")
    settings = Settings.from_env()
    assert (settings.accrual_delay_seconds, settings.direct_secrets, settings.port) == (0, "s1,s2", 6000)
