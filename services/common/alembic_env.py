"""The body of every service's `migrations/env.py`: async engine, one history per service.
On PostgreSQL an advisory lock makes concurrent replicas migrate one at a time."""

from __future__ import annotations

import asyncio
import zlib

from alembic import context
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from services.common.db import make_engine


def _do_run(connection: Connection, metadata: MetaData, service: str) -> None:
    if connection.dialect.name == "postgresql":
        lock_id = zlib.crc32(f"cashback-migrate-{service}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(metadata: MetaData, service: str) -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_do_run, metadata, service)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations(metadata: MetaData) -> None:
    service = context.config.attributes.get("service", "service")
    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_async(metadata, service))
