"""vault: upload intent and kind (link or fetch), retention policies per case category, export packages

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from consentcam.db.types import UTCDateTime

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('retention_policies',
    sa.Column('agency_id', sa.String(length=36), nullable=False),
    sa.Column('category', sa.String(length=50), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('updated_by', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], name=op.f('fk_retention_policies_agency_id_agencies')),
    sa.PrimaryKeyConstraint('agency_id', 'category', name=op.f('pk_retention_policies'))
    )
    op.create_table('exports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('agency_id', sa.String(length=36), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('evidence_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('file_name', sa.String(length=200), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], name=op.f('fk_exports_agency_id_agencies')),
    sa.ForeignKeyConstraint(['request_id'], ['footage_requests.id'], name=op.f('fk_exports_request_id_footage_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports'))
    )
    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exports_agency_id'), ['agency_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exports_request_id'), ['request_id'], unique=False)

    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index('ix_evidence_agency_created', ['agency_id', 'created_at'], unique=False)

    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=10), server_default='link', nullable=False))
        batch_op.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_uploads_request_item_id'), type_='unique')
        batch_op.create_index(batch_op.f('ix_uploads_sha256'), ['sha256'], unique=False)
        batch_op.create_index('ix_uploads_request_item_id', ['request_item_id'], unique=False)
        batch_op.create_index('uq_uploads_link_item', ['request_item_id'], unique=True, sqlite_where=sa.text("kind = 'link'"), postgresql_where=sa.text("kind = 'link'"))



def downgrade() -> None:
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_index('uq_uploads_link_item', sqlite_where=sa.text("kind = 'link'"), postgresql_where=sa.text("kind = 'link'"))
        batch_op.drop_index('ix_uploads_request_item_id')
        batch_op.drop_index(batch_op.f('ix_uploads_sha256'))
        batch_op.create_unique_constraint(batch_op.f('uq_uploads_request_item_id'), ['request_item_id'])
        batch_op.drop_column('sha256')
        batch_op.drop_column('kind')

    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_evidence_agency_created')

    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exports_request_id'))
        batch_op.drop_index(batch_op.f('ix_exports_agency_id'))

    op.drop_table('exports')
    op.drop_table('retention_policies')
