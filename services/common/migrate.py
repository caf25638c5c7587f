"""Applies a service's Alembic migrations: on start, or for all services by `make migrate`.

    python -m services.common.migrate all|identity|tracking|ledger|redemption
"""

from __future__ import annotations

import asyncio
import logging
import sys

from alembic import command
from alembic.config import Config

from services.common.config import ROOT, database_url

SERVICES = ("identity", "tracking", "ledger", "redemption")
log = logging.getLogger("cashback.migrate")


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, url: str) -> None:
    command.upgrade(alembic_config(service, url), "head")


async def upgrade_async(service: str, url: str) -> None:
    """Alembic's env runs its own event loop, so it runs in a worker thread."""
    await asyncio.to_thread(upgrade, service, url)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    targets = SERVICES if not argv or argv[0] == "all" else tuple(argv)
    for service in targets:
        if service not in SERVICES:
            print(f"unknown service {service!r}; one of {', '.join(SERVICES)} or all", file=sys.stderr)
            return 2
        url = database_url(service)
        upgrade(service, url)
        log.info("migrated %s (%s)", service, url.split("@")[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
