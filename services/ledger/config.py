from __future__ import annotations

from dataclasses import dataclass

from services.common.config import cashback_env, database_url, listen_port, settings_from_env


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 50053
    env: str = "prod"
    # How often the expiry job looks for pending transfers past their timeout.
    expiry_interval_seconds: float = 1.0
    default_pending_timeout_seconds: int = 3600
    # Group commit of single transfers: at most this many in one transaction, this many transactions at once.
    group_commit_size: int = 256
    group_commits_in_flight: int = 1

    @classmethod
    def from_env(cls) -> Settings:
        return settings_from_env(cls, "ledger", computed={
            "database_url": database_url("ledger"), "port": listen_port("ledger"), "env": cashback_env()})
