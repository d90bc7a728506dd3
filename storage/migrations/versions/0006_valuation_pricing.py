"""valuations record how each option value was priced

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('valuations') as batch_op:
        batch_op.add_column(
            sa.Column('pricing', sa.String(length=32), server_default='black_scholes', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('valuations') as batch_op:
        batch_op.drop_column('pricing')
