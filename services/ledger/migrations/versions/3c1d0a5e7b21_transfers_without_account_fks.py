"""transfers without foreign keys to accounts; pending-timeout index only over pending holds

Both for the batch insert path (CreateTransfers): the two foreign keys cost two referential
trigger queries per inserted transfer, and the (state, timeout_at) index took every transfer
although the expiry job only ever looks for pending ones. Why the foreign keys are not needed:
see models.Transfer.

Revision ID: 3c1d0a5e7b21
Revises: f66fb1b3aa93
Create Date: 2026-11-25 11:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '3c1d0a5e7b21'
down_revision: str | None = 'f66fb1b3aa93'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's foreign keys are unnamed: batch mode names them by this convention to drop them.
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
_PENDING = sa.text("state = 'PENDING'")


def _fk_names() -> tuple[str, str]:
    if op.get_bind().dialect.name == "sqlite":
        return "fk_transfers_debit_account_id_accounts", "fk_transfers_credit_account_id_accounts"
    return "transfers_debit_account_id_fkey", "transfers_credit_account_id_fkey"


def upgrade() -> None:
    debit_fk, credit_fk = _fk_names()
    with op.batch_alter_table('transfers', schema=None, naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.drop_constraint(debit_fk, type_='foreignkey')
        batch_op.drop_constraint(credit_fk, type_='foreignkey')
        batch_op.drop_index('ix_transfers_pending_timeout')
        batch_op.create_index('ix_transfers_pending_timeout', ['timeout_at'], unique=False,
                              postgresql_where=_PENDING, sqlite_where=_PENDING)


def downgrade() -> None:
    debit_fk, credit_fk = _fk_names()
    with op.batch_alter_table('transfers', schema=None, naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.drop_index('ix_transfers_pending_timeout')
        batch_op.create_index('ix_transfers_pending_timeout', ['state', 'timeout_at'], unique=False)
        batch_op.create_foreign_key(debit_fk, 'accounts', ['debit_account_id'], ['id'])
        batch_op.create_foreign_key(credit_fk, 'accounts', ['credit_account_id'], ['id'])
