"""reversals and debts: accounts.debt_kopecks, the reversals table, longer transfer ids

A user's debt lives on the account row (0 for every existing account); each ReverseCredit is
recorded in `reversals` (its idempotency record); transfer ids take the ledger's own suffixes
(`<transfer_id>:repay`, 6 more characters than a caller's 128). On PostgreSQL both column changes
are catalogue-only (a column with a constant default, a longer varchar: no table rewrite); SQLite
does not enforce varchar lengths, so its transfers table is left as it is. The DEBTS system account
is created on start, like the others (Ledger.ensure_system_accounts).

Revision ID: 1af546bc8e9c
Revises: 8d2e4f6a9c13
Create Date: 2026-12-01 21:05:31.221549
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.common.db

revision: str = '1af546bc8e9c'
down_revision: str | None = '8d2e4f6a9c13'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('reversals',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('taken', sa.BigInteger(), nullable=False),
    sa.Column('debt', sa.BigInteger(), nullable=False),
    sa.Column('created_at', services.common.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.add_column('accounts', sa.Column('debt_kopecks', sa.BigInteger(), server_default='0', nullable=False))
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('transfers', 'id', existing_type=sa.VARCHAR(length=128), type_=sa.String(length=134),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('transfers', 'id', existing_type=sa.String(length=134), type_=sa.VARCHAR(length=128),
                        existing_nullable=False)
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('debt_kopecks')
    op.drop_table('reversals')
