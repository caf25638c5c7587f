"""Each service's Alembic history builds exactly the schema its models describe, on the test
backend, and applying it twice is a no-op."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.common.db import make_engine
from services.common.migrate import SERVICES, upgrade_async


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(service, new_database):
    url = await new_database(service)
    await upgrade_async(service, url)
    await upgrade_async(service, url)
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}), metadata))
    finally:
        await engine.dispose()
    assert diff == [], f"{service}: models and migrations differ: {diff}"
