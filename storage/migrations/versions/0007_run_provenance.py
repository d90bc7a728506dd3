"""runs record their provenance: the fingerprint of their bars and checkpoint, and the
checkpoint's training window

Plain ALTER TABLE statements, not batch mode: a batch on SQLite copies ``runs`` and drops
the original, and with foreign keys on that drop would delete every row of every run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 06:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

COLUMNS = (
    ('data_fingerprint', sa.String(length=64)),
    ('checkpoint_fingerprint', sa.String(length=64)),
    ('trained_first_ns', sa.BigInteger()),
    ('trained_last_ns', sa.BigInteger()),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column('runs', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _kind in reversed(COLUMNS):
        op.drop_column('runs', name)
