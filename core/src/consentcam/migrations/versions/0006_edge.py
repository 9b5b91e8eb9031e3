"""edge relay and live feeds: edge devices and their keys, one-time pairing codes, the cameras a device offers,
emergencies and live sessions

Revision ID: 0006
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from consentcam.db.types import UTCDateTime

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "edge_devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("live_paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("unpaired_at", UTCDateTime(), nullable=True),
        sa.Column("last_seen_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_edge_devices_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_devices")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_edge_devices_key_hash")),
    )
    with op.batch_alter_table("edge_devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edge_devices_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "edge_pairing_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_edge_pairing_codes_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_pairing_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_edge_pairing_codes_code_hash")),
    )

    op.create_table(
        "edge_device_cameras",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("camera_ref", sa.String(length=100), nullable=False),
        sa.Column("offered_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["edge_devices.id"], name=op.f("fk_edge_device_cameras_device_id_edge_devices"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "camera_ref", name=op.f("pk_edge_device_cameras")),
    )

    op.create_table(
        "emergencies",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=36), nullable=False),
        sa.Column("area", JSON, nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("declared_by", sa.String(length=36), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name=op.f("fk_emergencies_agency_id_agencies")),
        sa.ForeignKeyConstraint(["declared_by"], ["users.id"], name=op.f("fk_emergencies_declared_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergencies")),
    )
    with op.batch_alter_table("emergencies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_emergencies_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index("ix_emergencies_active", ["ended_at", "ends_at"], unique=False)

    op.create_table(
        "live_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("camera_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("live_mode", sa.String(length=20), nullable=False),
        sa.Column("emergency_id", sa.String(length=36), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("renewals", sa.Integer(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=500), nullable=True),
        sa.Column("relay_started_at", UTCDateTime(), nullable=True),
        sa.Column("relay_stopped_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name=op.f("fk_live_sessions_camera_id_cameras")),
        sa.ForeignKeyConstraint(["device_id"], ["edge_devices.id"], name=op.f("fk_live_sessions_device_id_edge_devices")),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name=op.f("fk_live_sessions_agency_id_agencies")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_live_sessions_user_id_users")),
        sa.ForeignKeyConstraint(["emergency_id"], ["emergencies.id"], name=op.f("fk_live_sessions_emergency_id_emergencies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_sessions")),
    )
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_live_sessions_camera_id"), ["camera_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_live_sessions_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_live_sessions_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_live_sessions_ended_at"), ["ended_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_live_sessions_ended_at"))
        batch_op.drop_index(batch_op.f("ix_live_sessions_agency_id"))
        batch_op.drop_index(batch_op.f("ix_live_sessions_device_id"))
        batch_op.drop_index(batch_op.f("ix_live_sessions_camera_id"))
    op.drop_table("live_sessions")
    with op.batch_alter_table("emergencies", schema=None) as batch_op:
        batch_op.drop_index("ix_emergencies_active")
        batch_op.drop_index(batch_op.f("ix_emergencies_agency_id"))
    op.drop_table("emergencies")
    op.drop_table("edge_device_cameras")
    op.drop_table("edge_pairing_codes")
    with op.batch_alter_table("edge_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edge_devices_owner_id"))
    op.drop_table("edge_devices")
