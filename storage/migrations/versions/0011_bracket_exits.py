"""orders name the entry order of a bracket whose exit they are

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-15 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch_op:
        batch_op.add_column(sa.Column('parent_order_id', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch_op:
        batch_op.drop_column('parent_order_id')
