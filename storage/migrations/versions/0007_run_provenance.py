"""runs record their provenance: the fingerprint of their bars and checkpoint, and the
checkpoint's training window

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


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.add_column(sa.Column('data_fingerprint', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('checkpoint_fingerprint', sa.String(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column('trained_first_ns', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('trained_last_ns', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('trained_last_ns')
        batch_op.drop_column('trained_first_ns')
        batch_op.drop_column('checkpoint_fingerprint')
        batch_op.drop_column('data_fingerprint')
