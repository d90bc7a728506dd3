"""portfolio snapshots count borrow fees and financing

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-15 11:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('portfolio_snapshots') as batch_op:
        batch_op.add_column(
            sa.Column('borrow_fees', sa.Float(), server_default='0', nullable=False)
        )
        batch_op.add_column(sa.Column('financing', sa.Float(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('portfolio_snapshots') as batch_op:
        batch_op.drop_column('financing')
        batch_op.drop_column('borrow_fees')
