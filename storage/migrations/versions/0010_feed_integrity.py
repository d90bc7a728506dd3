"""paper runs store the gaps in their feed and count the bars they quarantined

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 11:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feed_gaps',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('first_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('bars', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('after_ts', sa.BigInteger(), nullable=True),
    sa.Column('before_ts', sa.BigInteger(), nullable=True),
    sa.Column('detected_ns', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'first_seq'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('paper_state') as batch_op:
        batch_op.add_column(
            sa.Column('quarantined', sa.BigInteger(), server_default='0', nullable=False)
        )
        batch_op.add_column(sa.Column('last_quarantine', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('paper_state') as batch_op:
        batch_op.drop_column('last_quarantine')
        batch_op.drop_column('quarantined')
    op.drop_table('feed_gaps')
