"""foundation: accounts, registry, grants, audit chain, outbox, requests and vault tables

Revision ID: 0001
Revises: 
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from consentcam.db.spatial import create_spatial_index, drop_spatial_index
from consentcam.db.types import UTCDateTime

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agencies',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('jurisdiction', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('min_lon', sa.Float(), nullable=False),
    sa.Column('min_lat', sa.Float(), nullable=False),
    sa.Column('max_lon', sa.Float(), nullable=False),
    sa.Column('max_lat', sa.Float(), nullable=False),
    sa.Column('suspended', sa.Boolean(), nullable=False),
    sa.Column('suspended_reason', sa.String(length=500), nullable=True),
    sa.Column('require_approval', sa.Boolean(), nullable=False),
    sa.Column('max_window_hours', sa.Float(), nullable=False),
    sa.Column('max_area_km2', sa.Float(), nullable=False),
    sa.Column('upload_link_days', sa.Float(), nullable=False),
    sa.Column('policy_text', sa.Text(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agencies')),
    sa.UniqueConstraint('name', name=op.f('uq_agencies_name'))
    )
    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor_id', sa.String(length=36), nullable=True),
    sa.Column('actor_role', sa.String(length=20), nullable=True),
    sa.Column('actor_agency_id', sa.String(length=36), nullable=True),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('subject_type', sa.String(length=30), nullable=True),
    sa.Column('subject_id', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('camera_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_events_hash'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_actor_agency_id'), ['actor_agency_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index('ix_audit_events_subject', ['subject_type', 'subject_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('run_after', UTCDateTime(), nullable=False),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_until', UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_jobs_idempotency_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim', ['status', 'run_after'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_kind'), ['kind'], unique=False)

    op.create_table('login_throttle',
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', UTCDateTime(), nullable=False),
    sa.Column('blocked_until', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttle'))
    )
    op.create_table('audit_event_cameras',
    sa.Column('camera_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['seq'], ['audit_events.seq'], name=op.f('fk_audit_event_cameras_seq_audit_events')),
    sa.PrimaryKeyConstraint('camera_id', 'seq', name=op.f('pk_audit_event_cameras'))
    )
    op.create_table('users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=40), nullable=True),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('agency_id', sa.String(length=36), nullable=True),
    sa.Column('badge', sa.Integer(), nullable=False),
    sa.Column('notify_email', sa.Boolean(), nullable=False),
    sa.Column('notify_sms', sa.Boolean(), nullable=False),
    sa.Column('webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('webhook_secret', sa.String(length=200), nullable=True),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("role in ('owner','investigator','supervisor','auditor','admin')", name=op.f('ck_users_role')),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], name=op.f('fk_users_agency_id_agencies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_agency_id'), ['agency_id'], unique=False)

    op.create_table('auth_tokens',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_auth_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_auth_tokens_token_hash'))
    )
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('cameras',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('bearing_deg', sa.Float(), nullable=True),
    sa.Column('fov_deg', sa.Float(), nullable=True),
    sa.Column('range_m', sa.Float(), nullable=True),
    sa.Column('retention_days', sa.Integer(), nullable=False),
    sa.Column('precision', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('connection_kind', sa.String(length=10), nullable=False),
    sa.Column('connection', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('connection_secret', sa.Text(), nullable=True),
    sa.Column('capabilities', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('grant_version', sa.Integer(), nullable=False),
    sa.Column('grant_map', sa.Boolean(), nullable=False),
    sa.Column('grant_requests', sa.Boolean(), nullable=False),
    sa.Column('grant_direct_fetch', sa.Boolean(), nullable=False),
    sa.Column('grant_live', sa.String(length=20), nullable=False),
    sa.Column('grant_expires_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("grant_live in ('never','emergency_only','always')", name=op.f('ck_cameras_live')),
    sa.CheckConstraint("precision in ('exact','block')", name=op.f('ck_cameras_precision')),
    sa.CheckConstraint('retention_days >= 0', name=op.f('ck_cameras_retention')),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_cameras_owner_id_users')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_cameras')),
    sa.UniqueConstraint('id', name=op.f('uq_cameras_id'))
    )
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.create_index('ix_cameras_lat_lon', ['lat', 'lon'], unique=False)
        batch_op.create_index(batch_op.f('ix_cameras_owner_id'), ['owner_id'], unique=False)

    op.create_table('footage_requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('agency_id', sa.String(length=36), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('case_number', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('area', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('window_start', UTCDateTime(), nullable=False),
    sa.Column('window_end', UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('approved_by', sa.String(length=36), nullable=True),
    sa.Column('approved_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('closed_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], name=op.f('fk_footage_requests_agency_id_agencies')),
    sa.ForeignKeyConstraint(['approved_by'], ['users.id'], name=op.f('fk_footage_requests_approved_by_users')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_footage_requests_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_footage_requests'))
    )
    with op.batch_alter_table('footage_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_footage_requests_agency_id'), ['agency_id'], unique=False)

    op.create_table('camera_shares',
    sa.Column('camera_id', sa.String(length=36), nullable=False),
    sa.Column('agency_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], name=op.f('fk_camera_shares_agency_id_agencies')),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_camera_shares_camera_id_cameras'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('camera_id', 'agency_id', name=op.f('pk_camera_shares'))
    )
    with op.batch_alter_table('camera_shares', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_camera_shares_agency_id'), ['agency_id'], unique=False)

    op.create_table('grant_versions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('camera_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('map', sa.Boolean(), nullable=False),
    sa.Column('requests', sa.Boolean(), nullable=False),
    sa.Column('direct_fetch', sa.Boolean(), nullable=False),
    sa.Column('live', sa.String(length=20), nullable=False),
    sa.Column('share_with', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_grant_versions_camera_id_cameras')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_grant_versions_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grant_versions')),
    sa.UniqueConstraint('camera_id', 'version', name='uq_grant_versions_camera_version')
    )
    with op.batch_alter_table('grant_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_grant_versions_camera_id'), ['camera_id'], unique=False)

    op.create_table('request_items',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('camera_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.String(length=500), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('token_expires_at', UTCDateTime(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_request_items_camera_id_cameras')),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_request_items_owner_id_users')),
    sa.ForeignKeyConstraint(['request_id'], ['footage_requests.id'], name=op.f('fk_request_items_request_id_footage_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_items')),
    sa.UniqueConstraint('request_id', 'camera_id', name='uq_request_items_request_camera'),
    sa.UniqueConstraint('token_hash', name=op.f('uq_request_items_token_hash'))
    )
    with op.batch_alter_table('request_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_request_items_camera_id'), ['camera_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_request_items_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_request_items_request_id'), ['request_id'], unique=False)

    op.create_table('evidence',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('storage_key', sa.String(length=200), nullable=False),
    sa.Column('agency_id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=True),
    sa.Column('request_item_id', sa.String(length=36), nullable=True),
    sa.Column('camera_id', sa.String(length=36), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('uploaded_by', sa.String(length=36), nullable=True),
    sa.Column('media', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('provenance', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('recorded_start', UTCDateTime(), nullable=True),
    sa.Column('recorded_end', UTCDateTime(), nullable=True),
    sa.Column('on_hold', sa.Boolean(), nullable=False),
    sa.Column('disposed_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], name=op.f('fk_evidence_agency_id_agencies')),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_evidence_camera_id_cameras')),
    sa.ForeignKeyConstraint(['request_id'], ['footage_requests.id'], name=op.f('fk_evidence_request_id_footage_requests')),
    sa.ForeignKeyConstraint(['request_item_id'], ['request_items.id'], name=op.f('fk_evidence_request_item_id_request_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence'))
    )
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_agency_id'), ['agency_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_camera_id'), ['camera_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_request_item_id'), ['request_item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_sha256'), ['sha256'], unique=False)

    op.create_table('uploads',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_item_id', sa.String(length=36), nullable=False),
    sa.Column('temp_name', sa.String(length=200), nullable=False),
    sa.Column('received', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['request_item_id'], ['request_items.id'], name=op.f('fk_uploads_request_item_id_request_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uploads')),
    sa.UniqueConstraint('request_item_id', name=op.f('uq_uploads_request_item_id'))
    )

    create_spatial_index(op)


def downgrade() -> None:
    drop_spatial_index(op)
    op.drop_table('uploads')
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_sha256'))
        batch_op.drop_index(batch_op.f('ix_evidence_request_item_id'))
        batch_op.drop_index(batch_op.f('ix_evidence_request_id'))
        batch_op.drop_index(batch_op.f('ix_evidence_camera_id'))
        batch_op.drop_index(batch_op.f('ix_evidence_agency_id'))

    op.drop_table('evidence')
    with op.batch_alter_table('request_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_request_items_request_id'))
        batch_op.drop_index(batch_op.f('ix_request_items_owner_id'))
        batch_op.drop_index(batch_op.f('ix_request_items_camera_id'))

    op.drop_table('request_items')
    with op.batch_alter_table('grant_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_grant_versions_camera_id'))

    op.drop_table('grant_versions')
    with op.batch_alter_table('camera_shares', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_camera_shares_agency_id'))

    op.drop_table('camera_shares')
    with op.batch_alter_table('footage_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_footage_requests_agency_id'))

    op.drop_table('footage_requests')
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameras_owner_id'))
        batch_op.drop_index('ix_cameras_lat_lon')

    op.drop_table('cameras')
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_tokens_user_id'))

    op.drop_table('auth_tokens')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_agency_id'))

    op.drop_table('users')
    op.drop_table('audit_event_cameras')
    op.drop_table('login_throttle')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_kind'))
        batch_op.drop_index('ix_jobs_claim')

    op.drop_table('jobs')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_subject')
        batch_op.drop_index(batch_op.f('ix_audit_events_actor_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_actor_agency_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')
    op.drop_table('agencies')
