"""paper bars name their symbol (a paper run of a universe)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 15:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the bar of a one-instrument run, whose symbol is the run's
    op.add_column('paper_bars', sa.Column('symbol', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('paper_bars') as batch_op:
        batch_op.drop_column('symbol')
