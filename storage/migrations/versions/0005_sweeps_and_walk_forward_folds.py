"""sweeps and walk-forward folds

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('scenario', sa.String(length=1000), nullable=False),
    sa.Column('config_json', sa.Text(), nullable=False),
    sa.Column('spec_json', sa.Text(), nullable=False),
    sa.Column('code_version', sa.String(length=100), nullable=False),
    sa.Column('scheduler', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('tasks', sa.Integer(), nullable=False),
    sa.Column('started_ns', sa.BigInteger(), nullable=False),
    sa.Column('ended_ns', sa.BigInteger(), nullable=True),
    sa.Column('wall_seconds', sa.Float(), nullable=True),
    sa.Column('summary_json', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweeps_status'), ['status'], unique=False)

    op.create_table('sweep_tasks',
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('task', sa.Integer(), nullable=False),
    sa.Column('overrides_json', sa.Text(), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('summary_json', sa.Text(), nullable=True),
    sa.Column('fills', sa.Integer(), nullable=True),
    sa.Column('fills_hash', sa.String(length=64), nullable=True),
    sa.Column('wall_seconds', sa.Float(), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sweep_id', 'task')
    )
    op.create_table('walk_forward_folds',
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('fold', sa.Integer(), nullable=False),
    sa.Column('train_start_ns', sa.BigInteger(), nullable=False),
    sa.Column('train_end_ns', sa.BigInteger(), nullable=False),
    sa.Column('test_start_ns', sa.BigInteger(), nullable=False),
    sa.Column('test_end_ns', sa.BigInteger(), nullable=False),
    sa.Column('train_bars', sa.Integer(), nullable=False),
    sa.Column('test_bars', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('train_note', sa.Text(), nullable=True),
    sa.Column('train_json', sa.Text(), nullable=True),
    sa.Column('params_json', sa.Text(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('summary_json', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sweep_id', 'fold')
    )
    op.create_table('walk_forward_equity',
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('ts_event', sa.BigInteger(), nullable=False),
    sa.Column('fold', sa.Integer(), nullable=False),
    sa.Column('equity', sa.Float(), nullable=False),
    sa.Column('fold_equity', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sweep_id', 'ts_event'),
    sqlite_with_rowid=False
    )


def downgrade() -> None:
    op.drop_table('walk_forward_equity')
    op.drop_table('walk_forward_folds')
    op.drop_table('sweep_tasks')
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweeps_status'))

    op.drop_table('sweeps')
