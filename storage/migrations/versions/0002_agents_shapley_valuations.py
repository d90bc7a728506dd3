"""agent actions, Shapley values, valuations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:21:41.009776
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_actions',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('ts_event', sa.BigInteger(), nullable=False),
    sa.Column('ts_init', sa.BigInteger(), nullable=False),
    sa.Column('symbol', sa.String(length=100), nullable=False),
    sa.Column('agent_id', sa.String(length=100), nullable=False),
    sa.Column('agent_index', sa.Integer(), nullable=False),
    sa.Column('bearish', sa.Float(), nullable=False),
    sa.Column('neutral', sa.Float(), nullable=False),
    sa.Column('bullish', sa.Float(), nullable=False),
    sa.Column('action', sa.Integer(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'seq'),
    sqlite_with_rowid=False
    )
    op.create_table('shapley_values',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('ts_event', sa.BigInteger(), nullable=False),
    sa.Column('ts_init', sa.BigInteger(), nullable=False),
    sa.Column('symbol', sa.String(length=100), nullable=False),
    sa.Column('agent_id', sa.String(length=100), nullable=False),
    sa.Column('agent_index', sa.Integer(), nullable=False),
    sa.Column('decision_ts', sa.BigInteger(), nullable=False),
    sa.Column('phi', sa.Float(), nullable=False),
    sa.Column('value_full', sa.Float(), nullable=False),
    sa.Column('value_model', sa.Float(), nullable=False),
    sa.Column('coalitions', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('stderr', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'seq'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('shapley_values', schema=None) as batch_op:
        batch_op.create_index('ix_shapley_values_run_agent', ['run_id', 'agent_index'], unique=False)

    op.create_table('valuations',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('ts_event', sa.BigInteger(), nullable=False),
    sa.Column('ts_init', sa.BigInteger(), nullable=False),
    sa.Column('symbol', sa.String(length=100), nullable=False),
    sa.Column('agent_id', sa.String(length=100), nullable=False),
    sa.Column('agent_index', sa.Integer(), nullable=False),
    sa.Column('share_price', sa.Float(), nullable=False),
    sa.Column('volatility', sa.Float(), nullable=False),
    sa.Column('strike', sa.Float(), nullable=False),
    sa.Column('time_to_expiry', sa.Float(), nullable=False),
    sa.Column('option_value', sa.Float(), nullable=False),
    sa.Column('target_weight', sa.Float(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('bubble', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'seq'),
    sqlite_with_rowid=False
    )


def downgrade() -> None:
    op.drop_table('valuations')
    with op.batch_alter_table('shapley_values', schema=None) as batch_op:
        batch_op.drop_index('ix_shapley_values_run_agent')

    op.drop_table('shapley_values')
    op.drop_table('agent_actions')
