"""requests: case category, who closed a request, per-item capability salt, expiry index

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('footage_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('category', sa.String(length=50), server_default='general', nullable=False))
        batch_op.add_column(sa.Column('closed_by', sa.String(length=36), nullable=True))

    with op.batch_alter_table('request_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_salt', sa.String(length=64), server_default='', nullable=False))
        batch_op.create_index(batch_op.f('ix_request_items_token_expires_at'), ['token_expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('request_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_request_items_token_expires_at'))
        batch_op.drop_column('token_salt')

    with op.batch_alter_table('footage_requests', schema=None) as batch_op:
        batch_op.drop_column('closed_by')
        batch_op.drop_column('category')

