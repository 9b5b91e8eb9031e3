"""The one declarative base and every table. Alembic's env reads its metadata from here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import JSONValue, UTCDateTime, new_id

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONValue, list[Any]: JSONValue}


def _id() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


# --- accounts -------------------------------------------------------------------------------------------


class Agency(Base):
    __tablename__ = "agencies"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    jurisdiction: Mapped[dict[str, Any]]  # GeoJSON Polygon or MultiPolygon
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    suspended_reason: Mapped[str | None] = mapped_column(String(500))
    require_approval: Mapped[bool] = mapped_column(Boolean, default=True)
    max_window_hours: Mapped[float] = mapped_column(Float, default=24.0)
    max_area_km2: Mapped[float] = mapped_column(Float, default=2.0)
    upload_link_days: Mapped[float] = mapped_column(Float, default=14.0)
    policy_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = _id()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    badge: Mapped[int] = mapped_column(Integer, default=0)  # short public number: "Investigator 14"
    notify_email: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    __table_args__ = (
        CheckConstraint("role in ('owner','investigator','supervisor','auditor','admin')", name="role"),
    )


class AuthToken(Base):
    """Bearer tokens and browser sessions; only the SHA-256 of the secret is stored."""

    __tablename__ = "auth_tokens"
    id: Mapped[str] = _id()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10), default="bearer")  # bearer | cookie
    csrf_token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKey(Base):
    """A machine client of one agency (an RMS, a GIS sync) with explicit scopes; only the key's digest is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = _id()
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class LoginThrottle(Base):
    """Failure counters per email and per client address, shared by every web process."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


class LinkedAccount(Base):
    """An owner's account at a camera vendor's cloud (e.g. Ring), linked in the portal: only what the vendor's
    plugin asked to keep (a refresh token), encrypted with the deployment key. Unlinking deletes the row."""

    __tablename__ = "linked_accounts"
    id: Mapped[str] = _id()
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    secret: Mapped[str] = mapped_column(Text)  # encrypted JSON, written by the plugin's token updater too
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("owner_id", "provider", name="uq_linked_accounts_owner_provider"),)


# --- registry and consent ------------------------------------------------------------------------------


class Camera(Base):
    """A registered camera. The current grant is kept on the row (indexed) beside its full history."""

    __tablename__ = "cameras"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # spatial index key
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    bearing_deg: Mapped[float | None] = mapped_column(Float)
    fov_deg: Mapped[float | None] = mapped_column(Float)
    range_m: Mapped[float | None] = mapped_column(Float)
    retention_days: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(10), default="block")
    status: Mapped[str] = mapped_column(String(10), default="active")  # active | paused | removed
    connection_kind: Mapped[str] = mapped_column(String(10), default="manual")
    connection: Mapped[dict[str, Any]] = mapped_column(default=dict)  # non-secret connection fields
    connection_secret: Mapped[str | None] = mapped_column(Text)  # encrypted with the deployment key
    capabilities: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # current grant, denormalised from grant_versions for indexed matching
    grant_version: Mapped[int] = mapped_column(Integer, default=0)
    grant_map: Mapped[bool] = mapped_column(Boolean, default=False)
    grant_requests: Mapped[bool] = mapped_column(Boolean, default=False)
    grant_direct_fetch: Mapped[bool] = mapped_column(Boolean, default=False)
    grant_live: Mapped[str] = mapped_column(String(20), default="never")
    grant_expires_at: Mapped[datetime | None]
    __table_args__ = (
        CheckConstraint("precision in ('exact','block')", name="precision"),
        CheckConstraint("grant_live in ('never','emergency_only','always')", name="live"),
        CheckConstraint("retention_days >= 0", name="retention"),
        Index("ix_cameras_lat_lon", "lat", "lon"),
    )


class GrantVersion(Base):
    """Append-only history of what an owner allowed; the newest version is the one in force."""

    __tablename__ = "grant_versions"
    id: Mapped[str] = _id()
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    map: Mapped[bool] = mapped_column(Boolean)
    requests: Mapped[bool] = mapped_column(Boolean)
    direct_fetch: Mapped[bool] = mapped_column(Boolean)
    live: Mapped[str] = mapped_column(String(20))
    share_with: Mapped[list[Any]] = mapped_column(default=list)
    expires_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)  # written by "revoke everything"
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    __table_args__ = (UniqueConstraint("camera_id", "version", name="uq_grant_versions_camera_version"),)


class CameraShare(Base):
    """The current grant's ``share_with``: other agencies that receive the same grant."""

    __tablename__ = "camera_shares"
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), primary_key=True, index=True)


# --- audit ---------------------------------------------------------------------------------------------


class AuditEvent(Base):
    """One link of the hash chain; ``seq`` is gapless and assigned under the chain lock."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(20))
    actor_agency_id: Mapped[str | None] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(30))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    camera_ids: Mapped[list[Any]] = mapped_column(default=list)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    __table_args__ = (Index("ix_audit_events_subject", "subject_type", "subject_id"),)


class AuditEventCamera(Base):
    """Index of which cameras an event names, so an owner's access log stays fast."""

    __tablename__ = "audit_event_cameras"
    camera_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("audit_events.seq"), primary_key=True
    )


# --- outbox --------------------------------------------------------------------------------------------


class Job(Base):
    """Work that outlives a request, written in the same transaction as its cause."""

    __tablename__ = "jobs"
    id: Mapped[str] = _id()
    kind: Mapped[str] = mapped_column(String(40), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    run_after: Mapped[datetime]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_jobs_claim", "status", "run_after"),)


# --- footage requests ----------------------------------------------------------------------------------


class FootageRequest(Base):
    __tablename__ = "footage_requests"
    id: Mapped[str] = _id()
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    case_number: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    area: Mapped[dict[str, Any]]  # as submitted: GeoJSON Polygon or {center, radius_m}
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20))  # draft | pending_approval | open | closed
    category: Mapped[str] = mapped_column(String(50), default="general", server_default="general")
    matched: Mapped[int] = mapped_column(Integer, default=0)
    approved_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(36))


class RequestItem(Base):
    """One camera asked within a request; its upload capability is stored only as a hash."""

    __tablename__ = "request_items"
    id: Mapped[str] = _id()
    request_id: Mapped[str] = mapped_column(ForeignKey("footage_requests.id"), index=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # matched | notified | uploaded | declined | expired | cancelled
    status_reason: Mapped[str | None] = mapped_column(String(500))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_salt: Mapped[str] = mapped_column(String(64), default="", server_default="")
    token_expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("request_id", "camera_id", name="uq_request_items_request_camera"),)


# --- evidence vault ------------------------------------------------------------------------------------


class Evidence(Base):
    """An immutable clip in the vault, addressed by its SHA-256."""

    __tablename__ = "evidence"
    id: Mapped[str] = _id()
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(200))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("footage_requests.id"), index=True)
    request_item_id: Mapped[str | None] = mapped_column(ForeignKey("request_items.id"), index=True)
    camera_id: Mapped[str | None] = mapped_column(ForeignKey("cameras.id"), index=True)
    source: Mapped[str] = mapped_column(String(100))  # "owner" or "plugin:<name>"
    uploaded_by: Mapped[str | None] = mapped_column(String(36))
    media: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recorded_start: Mapped[datetime | None]
    recorded_end: Mapped[datetime | None]
    on_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    disposed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_evidence_agency_created", "agency_id", "created_at"),)


class EvidenceLabel(Base):
    """One span an analyser saw in a clip: beside the evidence, never part of it. Rows of one label set share
    the analyser, the model's SHA-256 and ``created_at``, so a court can see which model produced a label."""

    __tablename__ = "evidence_labels"
    id: Mapped[str] = _id()
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    start_s: Mapped[float] = mapped_column(Float)  # offsets into the clip
    end_s: Mapped[float] = mapped_column(Float)
    start_at: Mapped[datetime | None]  # the same span in wall-clock time, when the clip's start is known
    end_at: Mapped[datetime | None]
    box: Mapped[list[Any] | None] = mapped_column(nullable=True)  # [x1, y1, x2, y2], fractions of the frame
    score: Mapped[float] = mapped_column(Float)
    colour: Mapped[str | None] = mapped_column(String(30))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    analyser: Mapped[str] = mapped_column(String(100))
    model_name: Mapped[str] = mapped_column(String(200))
    model_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_evidence_labels_label_start", "label", "start_at"),)


class Upload(Base):
    """A clip on its way into the vault: a resumable upload through an item's link (at most one per item at a
    time), or a file a plugin fetched for it."""

    __tablename__ = "uploads"
    id: Mapped[str] = _id()
    request_item_id: Mapped[str] = mapped_column(ForeignKey("request_items.id"))
    kind: Mapped[str] = mapped_column(String(10), default="link", server_default="link")  # link | fetch
    temp_name: Mapped[str] = mapped_column(String(200))
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int | None] = mapped_column(BigInteger)
    # Set (and committed) before the clip is placed in the store, cleared with the row when its evidence commits:
    # a row still carrying it after a crash names an object that recovery must take back out of the store.
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (
        Index("uq_uploads_link_item", "request_item_id", unique=True, sqlite_where=text("kind = 'link'"),
              postgresql_where=text("kind = 'link'")),
        Index("ix_uploads_request_item_id", "request_item_id"),
    )


class RetentionPolicy(Base):
    """How long an agency keeps evidence of one case category (``default`` applies to the others)."""

    __tablename__ = "retention_policies"
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(50), primary_key=True)
    days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(36))


class Export(Base):
    """A signed package of a request's clips; the file lives under ``<data_dir>/exports`` until purged."""

    __tablename__ = "exports"
    id: Mapped[str] = _id()
    request_id: Mapped[str] = mapped_column(ForeignKey("footage_requests.id"), index=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(10))  # building | ready | failed | purged
    evidence_ids: Mapped[list[Any]] = mapped_column(default=list)
    file_name: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


# --- edge relay and live feeds -------------------------------------------------------------------------


class EdgeDevice(Base):
    """An owner's edge relay box; it authenticates with a device key of which only the digest is stored."""

    __tablename__ = "edge_devices"
    id: Mapped[str] = _id()
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # None once unpaired
    status: Mapped[str] = mapped_column(String(10), default="paired")  # paired | unpaired
    live_paused: Mapped[bool] = mapped_column(Boolean, default=False)  # the owner's switch: no live view at all
    created_at: Mapped[datetime]
    unpaired_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]


class EdgePairingCode(Base):
    """A one-time enrolment code made in the portal; single use, expiring, stored as a digest."""

    __tablename__ = "edge_pairing_codes"
    id: Mapped[str] = _id()
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    device_id: Mapped[str | None] = mapped_column(String(36))


class EdgeDeviceCamera(Base):
    """A camera reference a device offered when it last connected (the owner links it with a camera's connection)."""

    __tablename__ = "edge_device_cameras"
    device_id: Mapped[str] = mapped_column(ForeignKey("edge_devices.id", ondelete="CASCADE"), primary_key=True)
    camera_ref: Mapped[str] = mapped_column(String(100), primary_key=True)
    offered_at: Mapped[datetime]


class Emergency(Base):
    """Declared by a supervisor for an area and a time limit; the only thing that opens ``emergency_only`` feeds."""

    __tablename__ = "emergencies"
    id: Mapped[str] = _id()
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    area: Mapped[dict[str, Any]]  # as declared: GeoJSON Polygon or {center, radius_m}
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    declared_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(36))
    __table_args__ = (Index("ix_emergencies_active", "ended_at", "ends_at"),)


class LiveSession(Base):
    """One live view of one camera by one investigator, with a hard end; relayed only while it stays allowed."""

    __tablename__ = "live_sessions"
    id: Mapped[str] = _id()
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("edge_devices.id"), index=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    live_mode: Mapped[str] = mapped_column(String(20))  # the grant's live mode when it opened
    emergency_id: Mapped[str | None] = mapped_column(ForeignKey("emergencies.id"))
    started_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    ended_at: Mapped[datetime | None] = mapped_column(index=True)
    end_reason: Mapped[str | None] = mapped_column(String(500))
    relay_started_at: Mapped[datetime | None]  # the agent confirmed it started relaying
    relay_stopped_at: Mapped[datetime | None]  # the agent confirmed it stopped
