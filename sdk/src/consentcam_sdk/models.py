"""Typed resources of the ConsentCam API, version 1, written by hand from ``API.md``.

Outputs ignore fields they do not know (the server may add fields within a version); inputs are sent with only the
fields you set, so the server's defaults apply. ``SCHEMAS`` maps every model to the OpenAPI component it mirrors;
``tests/test_openapi_agreement.py`` holds the two together against a live server."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["owner", "investigator", "supervisor", "auditor", "admin"]
AgencyRole = Literal["investigator", "supervisor", "auditor", "admin"]
LiveMode = Literal["never", "emergency_only", "always"]
Precision = Literal["exact", "block"]
ApiKeyScope = Literal["map:read", "requests:read", "evidence:read", "evidence:export", "audit:read"]


class Resource(BaseModel):
    """Something the server returns."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    schema_name: ClassVar[str]


class Input(BaseModel):
    """Something sent to the server."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_name: ClassVar[str]

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


# --- accounts -----------------------------------------------------------------------------------------


class NotifyPrefs(Input):
    schema_name = "NotifyPrefs"
    email: bool = True
    sms: bool = False
    webhook_url: str | None = None


class OwnerRegistration(Input):
    schema_name = "OwnerRegistration"
    email: str
    password: str
    name: str
    phone: str | None = None
    notify: NotifyPrefs | None = None


class Login(Input):
    schema_name = "Login"
    email: str
    password: str


class Created(Resource):
    schema_name = "Created"
    id: str


class OwnerCreated(Created):
    schema_name = "OwnerCreated"
    webhook_secret: str | None = None  # signs your webhooks; shown only in this answer


class NotificationPrefsIn(NotifyPrefs):
    schema_name = "NotificationPrefsIn"
    rotate_webhook_secret: bool = False


class NotificationPrefs(Resource):
    schema_name = "NotificationPrefs"
    email: bool
    sms: bool
    webhook_url: str | None
    webhook_secret_set: bool
    webhook_secret: str | None = None  # present only in the answer that made a new one


class User(Resource):
    schema_name = "UserSummary"
    id: str
    role: Role
    agency_id: str | None
    name: str | None = None


class LoginResult(Resource):
    schema_name = "LoginResult"
    token: str
    expires_at: datetime
    user: User


class AgencyCreate(Input):
    schema_name = "AgencyCreate"
    name: str
    jurisdiction: dict[str, Any]
    require_approval: bool = True
    max_window_hours: float = 24.0
    max_area_km2: float = 2.0
    upload_link_days: float = 14.0
    policy_text: str = ""


class Agency(Resource):
    schema_name = "AgencyOut"
    id: str
    name: str
    jurisdiction: dict[str, Any]
    suspended: bool
    require_approval: bool
    max_window_hours: float
    max_area_km2: float
    upload_link_days: float
    policy_text: str


class AgencyUserCreate(Input):
    schema_name = "AgencyUserCreate"
    email: str
    name: str | None = None
    role: AgencyRole


class AgencyUserCreated(Resource):
    schema_name = "AgencyUserCreated"
    id: str
    password: str


# --- cameras and consent ------------------------------------------------------------------------------


class LatLon(Input):
    schema_name = "LatLon"
    lat: float
    lon: float


class View(Input):
    schema_name = "View"
    bearing_deg: float
    fov_deg: float
    range_m: float


class CameraCreate(Input):
    schema_name = "CameraCreate"
    label: str
    location: LatLon
    view: View | None = None
    retention_days: int
    precision: Precision = "block"
    connection: dict[str, Any] | None = None


class CameraUpdate(Input):
    schema_name = "CameraUpdate"
    label: str | None = None
    location: LatLon | None = None
    view: View | None = None
    retention_days: int | None = None
    precision: Precision | None = None
    status: Literal["active", "paused"] | None = None
    connection: dict[str, Any] | None = None


class GrantSpec(Input):
    """What an owner allows, per camera; every PUT makes a new version."""

    schema_name = "GrantIn"
    map: bool = False
    requests: bool = False
    direct_fetch: bool = False
    live: LiveMode = "never"
    share_with: list[str] = Field(default_factory=list)
    expires_at: datetime | None = None


class Grant(Resource):
    schema_name = "GrantOut"
    camera_id: str
    version: int
    map: bool
    requests: bool
    direct_fetch: bool
    live: LiveMode
    share_with: list[str]
    expires_at: datetime | None
    revoked: bool = False
    in_force: bool
    created_at: datetime | None = None


class Camera(Resource):
    schema_name = "CameraOut"
    id: str
    label: str
    location: dict[str, float]
    view: dict[str, float] | None
    retention_days: int
    precision: Precision
    status: str
    connection: dict[str, Any]
    capabilities: list[str]
    grant: Grant
    created_at: datetime


class AccessEvent(Resource):
    schema_name = "AccessEvent"
    seq: int
    at: datetime
    action: str
    actor: str
    actor_role: str | None
    agency: str | None
    detail: dict[str, Any]


class AccessLog(Resource):
    schema_name = "AccessLog"
    camera_id: str
    events: list[AccessEvent]


class FeatureCollection(Resource):
    schema_name = "FeatureCollection"
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[dict[str, Any]]


# --- footage requests ---------------------------------------------------------------------------------


class Window(Input):
    schema_name = "Window"
    start: datetime
    end: datetime


class RequestCreate(Input):
    """``area``: a GeoJSON Polygon, or ``{"center": {"lat", "lon"}, "radius_m"}``."""

    schema_name = "RequestCreate"
    case_number: str
    description: str
    area: dict[str, Any]
    window: Window
    category: str = "general"


class RequestPreview(Input):
    schema_name = "RequestPreview"
    area: dict[str, Any]
    window: Window


class Preview(Resource):
    schema_name = "PreviewOut"
    matched: int
    owners: int
    area_km2: float


class RequestCreated(Resource):
    schema_name = "RequestCreated"
    id: str
    status: Literal["pending_approval", "open"]
    matched: int


class RequestStatus(Resource):
    schema_name = "RequestStatus"
    id: str
    status: str


class RequestItem(Resource):
    schema_name = "RequestItemOut"
    id: str
    camera_id: str
    status: Literal["notified", "uploaded", "declined", "expired", "cancelled"]
    status_reason: str | None = None
    link_expires_at: datetime
    evidence_ids: list[str]


class FootageRequest(Resource):
    schema_name = "RequestOut"
    id: str
    agency_id: str
    case_number: str
    description: str
    category: str
    area: dict[str, Any]
    window: dict[str, datetime]
    status: Literal["draft", "pending_approval", "open", "closed"]
    matched: int
    created_at: datetime
    approved_at: datetime | None = None
    closed_at: datetime | None = None
    items: list[RequestItem] | None = None


class RequestList(Resource):
    schema_name = "RequestList"
    requests: list[FootageRequest]


class Receipt(Resource):
    schema_name = "Receipt"
    evidence_id: str
    sha256: str
    size: int
    received_at: datetime


class InboxItem(Resource):
    schema_name = "InboxItem"
    id: str
    camera_id: str
    camera_label: str
    status: str
    status_reason: str | None = None
    agency: str
    case_number: str
    description: str
    window: dict[str, datetime]
    link_expires_at: datetime
    upload_url: str | None = None
    receipts: list[Receipt]


class Inbox(Resource):
    schema_name = "Inbox"
    items: list[InboxItem]


class Decline(Input):
    schema_name = "DeclineIn"
    reason: str | None = None


# --- uploads and the evidence vault -------------------------------------------------------------------


class UploadStatus(Resource):
    schema_name = "UploadStatus"
    item_id: str
    case_number: str
    window: dict[str, datetime]
    camera_id: str
    received: int
    total: int | None = None
    agency: str | None = None  # who asks
    description: str | None = None  # what they look for
    camera_label: str | None = None  # the owner's name for the camera asked about
    receipts: list[Receipt] = Field(default_factory=list)


class UploadProgress(Resource):
    """202: a chunk is stored, the clip is not complete. (The server documents this answer only in prose, so it
    has no component in the OpenAPI document to be checked against.)"""

    schema_name = ""
    received: int
    total: int | None
    complete: Literal[False] = False


class UploadReceipt(Resource):
    """201: the clip is wholly in the vault."""

    schema_name = "UploadReceipt"
    evidence_id: str
    sha256: str
    size: int


class CustodyEvent(Resource):
    schema_name = "CustodyEvent"
    seq: int
    at: datetime
    action: str
    actor_id: str | None
    actor_role: str | None
    actor_agency_id: str | None
    subject_type: str | None
    subject_id: str | None
    detail: dict[str, Any]
    camera_ids: list[str]
    prev_hash: str
    hash: str


class EvidenceSummary(Resource):
    schema_name = "EvidenceSummary"
    id: str
    sha256: str
    size: int
    agency_id: str
    request_id: str | None
    request_item_id: str | None
    case_number: str | None
    camera_id: str | None
    source: str
    uploaded_by: str | None
    media: dict[str, Any]
    provenance: dict[str, Any]
    recorded_start: datetime | None
    recorded_end: datetime | None
    received_at: datetime
    on_hold: bool
    disposed_at: datetime | None
    labels: list[dict[str, Any]] = Field(default_factory=list)


class Evidence(EvidenceSummary):
    schema_name = "EvidenceOut"
    custody: list[CustodyEvent]


class EvidencePage(Resource):
    schema_name = "EvidencePage"
    items: list[EvidenceSummary]
    next_cursor: str | None


class SigningKey(Resource):
    schema_name = "SigningKey"
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str
    public_key: str
    pem: str


# --- API keys -----------------------------------------------------------------------------------------


class ApiKeyCreate(Input):
    schema_name = "ApiKeyCreate"
    label: str
    scopes: list[ApiKeyScope]
    expires_at: datetime | None = None


class ApiKey(Resource):
    schema_name = "ApiKeyOut"
    id: str
    label: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    active: bool
    last_used_at: datetime | None


class ApiKeyCreated(ApiKey):
    """The secret ``key`` is shown once; pass it as ``api_key=`` to a client."""

    schema_name = "ApiKeyCreated"
    key: str


class ApiKeyList(Resource):
    schema_name = "ApiKeyList"
    keys: list[ApiKey]


# --- oversight ----------------------------------------------------------------------------------------


class TransparencyMonth(Resource):
    schema_name = "TransparencyMonth"
    month: str
    agency_id: str
    agency: str
    requests: int
    cameras_asked: int
    clips_received: int
    live_sessions: int
    emergencies: int


class MonthCount(Resource):
    schema_name = "MonthCount"
    month: str
    count: int


class AgencyPolicy(Resource):
    schema_name = "AgencyPolicy"
    id: str
    name: str
    policy_text: str
    suspended: bool
    require_approval: bool
    max_window_hours: float
    max_area_km2: float


class TransparencyReport(Resource):
    schema_name = "TransparencyReport"
    months: list[TransparencyMonth]
    revocations: list[MonthCount]
    agencies: list[AgencyPolicy]


class ChainReport(Resource):
    schema_name = "ChainReport"
    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    reason: str | None = None


class Plugin(Resource):
    schema_name = "PluginOut"
    name: str
    version: str
    capabilities: list[str]
    source: str
    description: str = ""


class PluginList(Resource):
    schema_name = "PluginList"
    plugins: list[Plugin]
    refused: list[dict[str, str]]


class Health(Resource):
    schema_name = "Health"
    status: str
    database: str
    spatial_index: str
    version: str


SCHEMAS: dict[type[BaseModel], str] = {
    model: model.schema_name
    for model in (Resource.__subclasses__() + Input.__subclasses__() + [Evidence, ApiKeyCreated])
    if model.schema_name
}
