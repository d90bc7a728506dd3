"""paper trading state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('paper_bars',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('feed_seq', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('ts_event', sa.BigInteger(), nullable=False),
    sa.Column('received_ns', sa.BigInteger(), nullable=False),
    sa.Column('open', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('close', sa.Float(), nullable=False),
    sa.Column('volume', sa.Float(), nullable=False),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'feed_seq'),
    sqlite_with_rowid=False
    )
    op.create_table('paper_state',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('feed', sa.String(length=200), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=False),
    sa.Column('bars', sa.BigInteger(), nullable=False),
    sa.Column('last_feed_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_bar_ns', sa.BigInteger(), nullable=True),
    sa.Column('last_received_ns', sa.BigInteger(), nullable=True),
    sa.Column('bar_ns', sa.BigInteger(), nullable=False),
    sa.Column('stale_after_ns', sa.BigInteger(), nullable=False),
    sa.Column('dropped', sa.BigInteger(), nullable=False),
    sa.Column('last_drop', sa.Text(), nullable=True),
    sa.Column('updated_ns', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id')
    )


def downgrade() -> None:
    op.drop_table('paper_state')
    op.drop_table('paper_bars')
