"""runs record the process that writes them: host, process id, heartbeat, bars stored

A reader marks a run ``interrupted`` when its process is gone or its heartbeat
is old. Existing runs get their start as heartbeat and the count of their
stored portfolio snapshots (one per bar) as bars stored.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.add_column(sa.Column('host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_ns', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('bars_stored', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE runs SET heartbeat_ns = started_ns, bars_stored = "
        "(SELECT count(*) FROM portfolio_snapshots WHERE portfolio_snapshots.run_id = runs.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('bars_stored')
        batch_op.drop_column('heartbeat_ns')
        batch_op.drop_column('pid')
        batch_op.drop_column('host')
