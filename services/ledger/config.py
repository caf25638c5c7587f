from __future__ import annotations

from dataclasses import dataclass

from services.common.config import cashback_env, database_url, env_int, env_str, listen_port


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
        return cls(
            database_url=database_url("ledger"),
            host=env_str("LEDGER_HOST", "127.0.0.1"),
            port=listen_port("ledger"),
            env=cashback_env(),
            default_pending_timeout_seconds=env_int("LEDGER_DEFAULT_PENDING_TIMEOUT_SECONDS", 3600),
            group_commit_size=env_int("LEDGER_GROUP_COMMIT_SIZE", cls.group_commit_size),
            group_commits_in_flight=env_int("LEDGER_GROUP_COMMITS_IN_FLIGHT", cls.group_commits_in_flight),
        )
