"""valuations are looked up by (run_id, ts_event, agent_index): index them

The Shapley listing joins every Shapley value to its agent's valuation at the
same bar; without this index each lookup scanned the run's valuations.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 09:00:00.000000
"""

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_valuations_run_ts_agent',
        'valuations',
        ['run_id', 'ts_event', 'agent_index'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_valuations_run_ts_agent', table_name='valuations')
