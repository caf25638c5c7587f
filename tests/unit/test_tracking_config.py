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


def test_allow_lists_are_per_network_and_checked_at_start_up():
    networks = Settings(database_url="x", env="dev", direct_allowed_ips="10.0.0.0/8, 192.0.2.7").networks()
    assert networks["direct"].admits("10.1.2.3") and networks["direct"].admits("192.0.2.7")
    assert not networks["direct"].admits("192.0.2.8") and not networks["direct"].admits("not an address")
    assert networks["admitad"].admits("203.0.113.1")  # no list: any address
    with pytest.raises(ConfigError):
        Settings(database_url="x", env="dev", admitad_allowed_ips="10.0.0.300/8").networks()


def test_redemption_address_comes_from_the_tracking_variable_then_the_shared_one(monkeypatch):
    monkeypatch.setenv("REDEMPTION_ADDRESS", "10.0.0.9:50054")
    assert Settings.from_env().redemption_address == "10.0.0.9:50054"
    monkeypatch.setenv("TRACKING_REDEMPTION_ADDRESS", "10.0.0.8:50054")
    assert Settings.from_env().redemption_address == "10.0.0.8:50054"
    assert Settings(database_url="x").redemption_address == ""  # tracking alone: no sweep
