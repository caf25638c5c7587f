"""Autogenerates a migration for one service against a scratch SQLite database at head:

    python -m services.common.make_migration ledger "add holds"
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from services.common.migrate import SERVICES, alembic_config


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in SERVICES:
        print("usage: python -m services.common.make_migration SERVICE MESSAGE", file=sys.stderr)
        return 2
    service, message = argv
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'scratch.db'}"
        cfg = alembic_config(service, url)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
