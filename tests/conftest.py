"""Test backends. `CASHBACK_TEST_BACKEND=postgres` (default): every service database is a fresh
PostgreSQL database and Redis is real. `CASHBACK_TEST_BACKEND=embedded`: SQLite files and no Redis
(the database-backed idempotency path). A backend that does not answer fails the run: never skip."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

# As `make test` runs them: dev mode, so services in this process accept, and clients present, the
# dev service credential (services/common/credentials.py); tests of production mode set it themselves.
os.environ.setdefault("CASHBACK_ENV", "dev")
BACKEND = os.environ.get("CASHBACK_TEST_BACKEND", "postgres")
POSTGRES_ADMIN_URL = os.environ.get("CASHBACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("CASHBACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

if BACKEND not in {"postgres", "embedded"}:
    raise pytest.UsageError(f"CASHBACK_TEST_BACKEND must be postgres or embedded, not {BACKEND!r}")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _check_backends() -> None:
    if BACKEND == "postgres":
        import asyncpg

        try:
            conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=5)
            await conn.close()
        except Exception as exc:  # noqa: BLE001
            raise SystemExit(f"PostgreSQL at {POSTGRES_ADMIN_URL} does not answer: {exc}") from exc
    client = Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        await client.ping()
        # A clean slate: rate-limit windows and idempotency keys of an earlier run must not leak
        # into this one (the test database is ours alone; runs must not overlap).
        await client.flushdb()
    except Exception as exc:  # noqa: BLE001
        raise SystemExit(f"Redis at {REDIS_TEST_URL} does not answer: {exc}") from exc
    finally:
        await client.aclose()


def pytest_sessionstart(session: pytest.Session) -> None:
    try:
        asyncio.run(_check_backends())
    except SystemExit as exc:
        pytest.exit(f"test backend missing: {exc}", returncode=3)


@pytest.fixture(scope="session")
def backend() -> str:
    return BACKEND


@pytest.fixture(scope="session")
def redis_url() -> str:
    """What services under test get as REDIS_URL: real Redis, or "off" in embedded mode."""
    return REDIS_TEST_URL if BACKEND == "postgres" else "off"


@pytest.fixture(scope="session")
def real_redis_url() -> str:
    """For tests about Redis itself (rate limits, fast paths): always the real one."""
    return REDIS_TEST_URL


DatabaseFactory = Callable[[str], Awaitable[str]]


@pytest.fixture(scope="session")
async def new_database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DatabaseFactory]:
    """`await new_database("ledger")` → the URL of a new, empty database for that service."""
    created: list[str] = []

    async def factory(service: str) -> str:
        name = f"cbtest_{service}_{uuid.uuid4().hex[:10]}"
        if BACKEND == "embedded":
            path: Path = tmp_path_factory.mktemp("db") / f"{name}.db"
            return f"sqlite+aiosqlite:///{path}"
        import asyncpg

        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        return _sqlalchemy_url(f"{base}/{name}")

    yield factory

    if created:
        import asyncpg

        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL))
        try:
            for name in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
