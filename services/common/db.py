"""Database engine and units of work, the same for every service.

SQLite (the embedded default) serialises writers: every write transaction (`Database.transaction`)
starts with `BEGIN IMMEDIATE`, so a read-then-write use case cannot race another one (the effect
that row locks have on PostgreSQL). Reads (`Database.sessions`) never take that lock: they run on
connections of their own pool with a plain (deferred) BEGIN, and in WAL mode a reader sees the last
commit without waiting for a writer, whether for its lock or for a pooled connection. On
PostgreSQL, use cases lock the rows they change with `SELECT ... FOR UPDATE` and background jobs
claim work with `FOR UPDATE SKIP LOCKED`; reads and writes share one pool.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str, *, pool_size: int | None = None, local_ping: bool = False,
                read_only: bool = False) -> AsyncEngine:
    """`pool_size` connections per process (and as many again in overflow); default from
    `CASHBACK_DB_POOL_SIZE` (5): four services × replicas must fit PostgreSQL's max_connections.

    SQLite: transactions begin with `BEGIN IMMEDIATE` (the write lock), or with `read_only` with a
    plain BEGIN on `query_only` connections (a write through them fails loudly).

    A pooled PostgreSQL connection is checked before each use: by default with a ping (with asyncpg,
    three round trips: BEGIN, `;`, ROLLBACK); with `local_ping`, by asking the driver whether the
    server closed it (a restart, a terminated backend), which costs nothing: for hot paths that
    check out a connection per request. A connection that dies silently then fails its one request,
    and the pool replaces it."""
    if pool_size is None:
        pool_size = int(os.environ.get("CASHBACK_DB_POOL_SIZE", "5"))
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=not local_ping)
    if local_ping:
        @event.listens_for(engine.sync_engine, "checkout")
        def _closed_by_server(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
            is_closed = getattr(proxy.driver_connection, "is_closed", None)
            if is_closed is not None and is_closed():
                raise DisconnectionError("the server closed the connection")  # the pool reconnects

    return engine


class Database:
    """One engine per service process (two on SQLite: writers and readers), and its sessions:
    `sessions()` to read, `transaction()` to write."""

    def __init__(self, url: str, *, local_ping: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, local_ping=local_ping)
        self.read_engine = self.engine
        if not self.is_sqlite:
            # PostgreSQL: reads in autocommit, with no BEGIN and ROLLBACK around them (one round
            # trip for a one-statement read, not three). At READ COMMITTED, each statement of a
            # transaction sees its own snapshot anyway; what needs one snapshot takes a transaction.
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        elif self.engine.url.database not in (None, "", ":memory:"):  # in memory: one database per connection
            self.read_engine = make_engine(url, read_only=True)
        self.sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._writing = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends normally, rolls back otherwise."""
        async with self._writing() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine.pool is not self.engine.pool:
            await self.read_engine.dispose()
