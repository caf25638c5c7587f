"""orders per shop, stored reports, reversals, claims that pay once, monthly service rewards

Revision ID: 5b7e1c2d9a40
Revises: ca555b8396fa
Create Date: 2026-12-01 21:45:00

A purchase is identified by (partner, order, part) instead of (network, order, part): existing rows
keep their ids and figures; `credited_kopecks` of purchases already credited is their cashback.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.common.db

revision: str = '5b7e1c2d9a40'
down_revision: str | None = 'ca555b8396fa'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("status <> 'REJECTED'")


def upgrade() -> None:
    with op.batch_alter_table('purchases') as batch:
        batch.drop_constraint('uq_purchases_network_order_part', type_='unique')
        batch.drop_index('ix_purchases_partner_order')
        batch.add_column(sa.Column('report_time', services.common.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('commission_kopecks', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('credited_kopecks', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('credit_count', sa.Integer(), nullable=False, server_default='0'))
        batch.create_unique_constraint('uq_purchases_partner_order_part', ['partner_id', 'order_id', 'part_id'])
    op.execute("UPDATE purchases SET credited_kopecks = cashback_kopecks, credit_count = 1 "
               "WHERE status = 'ACCRUED' AND user_id IS NOT NULL AND cashback_kopecks > 0")
    op.create_table(
        'purchase_reports',
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('purchase_id', sa.String(length=36), nullable=False),
        sa.Column('postback_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('amount_kopecks', sa.BigInteger(), nullable=False),
        sa.Column('event_time', services.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('received_at', services.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('effect', sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint('fingerprint'),
    )
    op.create_index('ix_purchase_reports_purchase', 'purchase_reports', ['purchase_id', 'received_at'])
    op.create_table(
        'activation_rewards',
        sa.Column('user_id', sa.String(length=64), nullable=False),
        sa.Column('partner_id', sa.String(length=64), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('purchase_id', sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'partner_id', 'month'),
    )
    op.create_index('uq_claims_partner_order_live', 'claims', ['partner_id', 'order_id'], unique=True,
                    postgresql_where=_LIVE, sqlite_where=_LIVE)


def downgrade() -> None:
    op.drop_index('uq_claims_partner_order_live', table_name='claims')
    op.drop_table('activation_rewards')
    op.drop_index('ix_purchase_reports_purchase', table_name='purchase_reports')
    op.drop_table('purchase_reports')
    with op.batch_alter_table('purchases') as batch:
        batch.drop_constraint('uq_purchases_partner_order_part', type_='unique')
        batch.drop_column('credit_count')
        batch.drop_column('credited_kopecks')
        batch.drop_column('commission_kopecks')
        batch.drop_column('report_time')
        batch.create_index('ix_purchases_partner_order', ['partner_id', 'order_id'])
        batch.create_unique_constraint('uq_purchases_network_order_part', ['network', 'order_id', 'part_id'])
