"""training runs and metrics

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('training_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('scenario', sa.String(length=1000), nullable=False),
    sa.Column('config_json', sa.Text(), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('code_version', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_ns', sa.BigInteger(), nullable=False),
    sa.Column('ended_ns', sa.BigInteger(), nullable=True),
    sa.Column('wall_seconds', sa.Float(), nullable=True),
    sa.Column('updates', sa.Integer(), nullable=False),
    sa.Column('checkpoint', sa.String(length=1000), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_runs_status'), ['status'], unique=False)

    op.create_table('training_metrics',
    sa.Column('training_run_id', sa.Integer(), nullable=False),
    sa.Column('update', sa.Integer(), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('complexity', sa.Float(), nullable=False),
    sa.Column('episodes', sa.Integer(), nullable=False),
    sa.Column('agent_steps', sa.BigInteger(), nullable=False),
    sa.Column('episode_return', sa.Float(), nullable=True),
    sa.Column('episode_pnl', sa.Float(), nullable=True),
    sa.Column('policy_loss', sa.Float(), nullable=True),
    sa.Column('value_loss', sa.Float(), nullable=True),
    sa.Column('entropy', sa.Float(), nullable=True),
    sa.Column('approx_kl', sa.Float(), nullable=True),
    sa.Column('clip_fraction', sa.Float(), nullable=True),
    sa.Column('explained_variance', sa.Float(), nullable=True),
    sa.Column('weights', sa.String(length=200), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['training_run_id'], ['training_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('training_run_id', 'update')
    )


def downgrade() -> None:
    op.drop_table('training_metrics')
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_runs_status'))

    op.drop_table('training_runs')
