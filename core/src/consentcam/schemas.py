"""Wire models of the public HTTP API (``shared/API.md``). They validate requests and generate the OpenAPI
document, so the two cannot drift apart. Inputs forbid unknown fields and non-finite numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator

Role = Literal["owner", "investigator", "supervisor", "auditor", "admin"]
AgencyRole = Literal["investigator", "supervisor", "auditor", "admin"]
LiveMode = Literal["never", "emergency_only", "always"]
Precision = Literal["exact", "block"]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- accounts -----------------------------------------------------------------------------------------


class NotifyPrefs(Input):
    email: bool = True
    sms: bool = False
    webhook_url: Annotated[str, Field(max_length=2000, pattern=r"^https?://")] | None = None


class OwnerRegistration(Input):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=10, max_length=200)
    name: ShortText
    phone: Annotated[str, Field(max_length=40, pattern=r"^\+?[0-9 ().-]{5,40}$")] | None = None
    notify: NotifyPrefs = Field(default_factory=NotifyPrefs)


class Created(Output):
    id: str


class ProbeOut(Output):
    device: dict[str, Any] = Field(description="maker, model, firmware, serial, as the device reports them")
    profiles: list[dict[str, Any]] = Field(description="media profiles: name, encoding, resolution, stream URI")
    capabilities: list[str] = Field(description="what the device can do, kept on the camera (e.g. recording, replay)")


class OwnerCreated(Created):
    webhook_secret: str | None = Field(
        default=None, description="the secret that signs your webhooks (ConsentCam-Signature); shown only now")


class NotificationPrefsIn(NotifyPrefs):
    rotate_webhook_secret: bool = Field(default=False, description="make a new webhook signing secret (shown once)")


class NotificationPrefs(Output):
    email: bool
    sms: bool
    webhook_url: str | None
    webhook_secret_set: bool
    webhook_secret: str | None = Field(default=None, description="a new signing secret, present only in the answer "
                                                                 "that made it")


class Login(Input):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=200)


class UserSummary(Output):
    id: str
    role: Role
    agency_id: str | None
    name: str | None = None


class LoginResult(Output):
    token: str
    expires_at: datetime
    user: UserSummary


class AgencyCreate(Input):
    name: ShortText
    jurisdiction: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon (bare, Feature or FeatureCollection of one)")
    require_approval: bool = True
    max_window_hours: float = Field(default=24.0, gt=0, le=24 * 31)
    max_area_km2: float = Field(default=2.0, gt=0, le=10_000)
    upload_link_days: float = Field(default=14.0, gt=0, le=365)
    policy_text: str = Field(default="", max_length=20_000)


class AgencyOut(Output):
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
    email: EmailStr = Field(max_length=320)
    name: ShortText | None = None
    role: AgencyRole


class AgencyUserCreated(Output):
    id: str
    password: str = Field(description="one-time password, shown once")


# --- cameras and consent ------------------------------------------------------------------------------


class LatLon(Input):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class View(Input):
    bearing_deg: float = Field(ge=0, le=360)
    fov_deg: float = Field(gt=0, le=360)
    range_m: float = Field(gt=0, le=2000)


class Connection(Input):
    """How plugins reach the camera. Secret fields (password) are write-only."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    kind: Literal["manual", "onvif", "rtsp", "ring", "edge"] = "manual"


class CameraCreate(Input):
    label: ShortText
    location: LatLon
    view: View | None = None
    retention_days: int = Field(ge=0, le=3650)
    precision: Precision = "block"
    connection: Connection | None = None


class CameraUpdate(Input):
    label: ShortText | None = None
    location: LatLon | None = None
    view: View | None = None
    retention_days: int | None = Field(default=None, ge=0, le=3650)
    precision: Precision | None = None
    status: Literal["active", "paused"] | None = None
    connection: Connection | None = None


class GrantIn(Input):
    map: bool = False
    requests: bool = False
    direct_fetch: bool = False
    live: LiveMode = "never"
    share_with: list[Annotated[str, Field(max_length=36)]] = Field(default_factory=list, max_length=50)
    expires_at: AwareDatetime | None = None


class GrantOut(Output):
    camera_id: str
    version: int
    map: bool
    requests: bool
    direct_fetch: bool
    live: LiveMode
    share_with: list[str]
    expires_at: datetime | None
    revoked: bool = False
    in_force: bool = Field(description="false once expires_at has passed or everything was revoked")
    created_at: datetime | None = None


class CameraOut(Output):
    id: str
    label: str
    location: dict[str, float]
    view: dict[str, float] | None
    retention_days: int
    precision: Precision
    status: str
    connection: dict[str, Any]
    capabilities: list[str]
    grant: GrantOut
    created_at: datetime


class AccessEvent(Output):
    seq: int
    at: datetime
    action: str
    actor: str = Field(description='who, in plain words: "Investigator 14, Metro PD"')
    actor_role: str | None
    agency: str | None
    detail: dict[str, Any]


class AccessLog(Output):
    camera_id: str
    events: list[AccessEvent]


# --- map ----------------------------------------------------------------------------------------------


class AccessLogQuery(Input):
    before: int | None = Field(default=None, ge=0, le=2**62, description="only events older than this sequence number (paging)")


class RequestListQuery(Input):
    status: Literal["draft", "pending_approval", "open", "closed"] | None = None
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class MapQuery(Input):
    bbox: str | None = Field(default=None, description="minlon,minlat,maxlon,maxlat", max_length=200)

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split(",")
        if len(parts) != 4:
            raise ValueError("bbox is minlon,minlat,maxlon,maxlat")
        try:
            a, b, c, d = (float(p) for p in parts)
        except ValueError as exc:
            raise ValueError("bbox values must be numbers") from exc
        if not all(-180 <= x <= 180 for x in (a, c)) or not all(-90 <= y <= 90 for y in (b, d)):
            raise ValueError("bbox coordinates out of range")
        if a > c or b > d:
            raise ValueError("bbox minimum must not exceed maximum")
        return value


class FeatureCollection(Output):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[dict[str, Any]]


# --- oversight ----------------------------------------------------------------------------------------


class ChainReport(Output):
    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    reason: str | None = None


class PluginOut(Output):
    name: str
    version: str
    capabilities: list[str]
    source: str
    description: str = ""


class PluginList(Output):
    plugins: list[PluginOut]
    refused: list[dict[str, str]]


class Health(Output):
    status: str
    database: str
    spatial_index: str
    version: str


# --- footage requests ---------------------------------------------------------------------------------

AREA_SCHEMA = {
    "oneOf": [
        {"type": "object", "title": "GeoJSON Polygon (holes allowed)", "required": ["type", "coordinates"],
         "properties": {"type": {"const": "Polygon"},
                        "coordinates": {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}}},
        {"type": "object", "title": "Circle", "required": ["center", "radius_m"],
         "properties": {"center": {"type": "object", "required": ["lat", "lon"],
                                   "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
                        "radius_m": {"type": "number", "exclusiveMinimum": 0}}},
    ]
}


class Window(Input):
    start: AwareDatetime
    end: AwareDatetime


class RequestCreate(Input):
    case_number: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=5000)
    area: dict[str, Any] = Field(json_schema_extra=AREA_SCHEMA)
    window: Window
    category: str = Field(default="general", pattern=r"^[a-z0-9_-]{1,50}$",
                          description="case category; the agency's retention policy for evidence follows it")


class RequestPreview(Input):
    area: dict[str, Any] = Field(json_schema_extra=AREA_SCHEMA)
    window: Window


class PreviewOut(Output):
    matched: int
    owners: int
    area_km2: float


class RequestCreated(Output):
    id: str
    status: Literal["pending_approval", "open"]
    matched: int


class RequestStatus(Output):
    id: str
    status: str


class RequestItemOut(Output):
    id: str
    camera_id: str
    status: Literal["notified", "uploaded", "declined", "expired", "cancelled"]
    status_reason: str | None = None
    link_expires_at: datetime
    evidence_ids: list[str]


class RequestOut(Output):
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
    items: list[RequestItemOut] | None = None


class RequestList(Output):
    requests: list[RequestOut]


class Receipt(Output):
    evidence_id: str
    sha256: str
    size: int
    received_at: datetime


class InboxItem(Output):
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


class Inbox(Output):
    items: list[InboxItem]


class DeclineIn(Input):
    reason: str | None = Field(default=None, max_length=500)


class UploadInfo(Output):
    item_id: str
    case_number: str
    window: dict[str, datetime]
    camera_id: str
    received: int = Field(description="bytes already received of an interrupted upload; resume from here")


# --- transparency -------------------------------------------------------------------------------------


class TransparencyMonth(Output):
    month: str = Field(description="YYYY-MM (UTC)")
    agency_id: str
    agency: str
    requests: int
    cameras_asked: int
    clips_received: int
    live_sessions: int
    emergencies: int


class MonthCount(Output):
    month: str
    count: int


class AgencyPolicy(Output):
    id: str
    name: str
    policy_text: str
    suspended: bool
    require_approval: bool
    max_window_hours: float
    max_area_km2: float


class TransparencyReport(Output):
    months: list[TransparencyMonth]
    revocations: list[MonthCount]
    agencies: list[AgencyPolicy]


# --- API keys -----------------------------------------------------------------------------------------


class ApiKeyCreate(Input):
    label: ShortText
    scopes: list[Literal["map:read", "requests:read", "evidence:read", "evidence:export", "audit:read"]] = Field(
        min_length=1, max_length=5)
    expires_at: AwareDatetime | None = None


class ApiKeyOut(Output):
    id: str
    label: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    active: bool
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the secret, shown once; send it as 'Authorization: Bearer <key>'")


class ApiKeyList(Output):
    keys: list[ApiKeyOut]


# --- evidence vault -----------------------------------------------------------------------------------


class UploadReceipt(Output):
    """201 from ``PUT /api/v1/uploads/{token}``: the clip is wholly in the vault."""

    evidence_id: str
    sha256: str = Field(description="SHA-256 of the bytes received, hex")
    size: int


class UploadProgress(Output):
    """202 from ``PUT /api/v1/uploads/{token}``: the chunk is stored, the clip is not complete. Send the rest with
    ``Content-Range: bytes RECEIVED-LAST/TOTAL``; the same is in the ``Upload-Offset`` and ``Range`` headers."""

    received: int = Field(description="bytes stored so far; the next chunk starts here")
    total: int | None = Field(description="the clip's announced size, if known")
    complete: Literal[False] = False


class UploadStatus(UploadInfo):
    total: int | None = Field(default=None, description="the announced size of the upload in progress, if known")
    agency: str | None = Field(default=None, description="who asks: the requesting agency's name")
    description: str | None = Field(default=None, description="what the agency says it is looking for")
    camera_label: str | None = Field(default=None, description="the owner's own name for the camera asked about")
    receipts: list[Receipt] = Field(default_factory=list, description="clips already stored through this link")


class CustodyEvent(Output):
    """One link of the audit chain about a clip; every field the hash covers, so it can be checked elsewhere."""

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


class EvidenceSummary(Output):
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
    media: dict[str, Any] = Field(description="container, codecs, duration_s, resolution, creation_time, ...")
    provenance: dict[str, Any]
    recorded_start: datetime | None
    recorded_end: datetime | None
    received_at: datetime
    on_hold: bool
    disposed_at: datetime | None
    labels: list[dict[str, Any]] = Field(
        default_factory=list,
        description="analysis labels, stored beside the clip: {label, start_s, end_s, start_at, end_at, box, score, "
                    "colour, attributes, analyser, model_name, model_sha256, created_at}")


class EvidenceOut(EvidenceSummary):
    custody: list[CustodyEvent]


class EvidenceQuery(Input):
    request_id: str | None = Field(default=None, max_length=36)
    camera_id: str | None = Field(default=None, max_length=36)
    from_: AwareDatetime | None = Field(default=None, alias="from",
                                        description="clips whose recording ends at or after this time")
    to: AwareDatetime | None = Field(default=None, description="clips whose recording starts at or before this time")
    label: str | None = Field(default=None, max_length=100,
                              description="analysis label, e.g. truck; with from/to, the labelled span must overlap them")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=500, description="next_cursor of the previous page")


class EvidencePage(Output):
    items: list[EvidenceSummary]
    next_cursor: str | None


class HoldIn(Input):
    reason: str = Field(min_length=1, max_length=500)


class HoldOut(Output):
    id: str
    on_hold: bool


class RetentionIn(Input):
    days: int = Field(ge=1, le=36500, description="days from receipt after which clips of this category are disposed of")


class RetentionPolicyOut(Output):
    category: str
    days: int
    updated_at: datetime


class RetentionPolicies(Output):
    policies: list[RetentionPolicyOut]


class SigningKey(Output):
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str = Field(description="sha256 of the raw public key")
    public_key: str = Field(description="the raw 32-byte public key, base64")
    pem: str


# --- accounts at a camera vendor's cloud (e.g. Ring) ---------------------------------------------------


class AccountLinkIn(Input):
    """The owner's sign-in at the vendor, used once to obtain a refresh token and never stored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=False)  # passwords as typed
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)
    code: str | None = Field(default=None, min_length=1, max_length=20, pattern=r"^\s*[0-9A-Za-z-]+\s*$",
                             description="the two-factor code the vendor sent, on the second attempt")


class LinkedDevice(Output):
    device_id: str
    name: str
    kind: str = ""
    recordings: bool = Field(description="whether the account may download this device's recordings")


class AccountLinkOut(Output):
    provider: str
    linked: bool
    code_required: bool = False
    detail: str = ""
    devices: list[LinkedDevice] = []
    linked_at: datetime | None = None


class LinkedAccountOut(Output):
    provider: str
    linked_at: datetime
    updated_at: datetime


class LinkedAccountList(Output):
    accounts: list[LinkedAccountOut]
