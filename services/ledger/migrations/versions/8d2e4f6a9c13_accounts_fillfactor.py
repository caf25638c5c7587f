"""accounts: fillfactor 70 (PostgreSQL), room in each page for HOT updates of the counters

New and rewritten pages keep 30% free; existing pages get the room as they are rewritten
(VACUUM FULL or CLUSTER rewrite them all at once, if wanted). SQLite has no such setting.

Revision ID: 8d2e4f6a9c13
Revises: 3c1d0a5e7b21
Create Date: 2026-11-25 11:25:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '8d2e4f6a9c13'
down_revision: str | None = '3c1d0a5e7b21'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts RESET (fillfactor)")
