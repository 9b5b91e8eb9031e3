"""Typed values that cross the plugin boundary. Hooks take and return these, never raw dicts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin declares about itself before it is loaded. ``capabilities`` decide whether it may be."""

    name: str
    version: str
    capabilities: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class CameraConnection:
    """How to reach a camera. ``secret`` is decrypted only for the duration of a plugin call."""

    kind: str
    fields: dict[str, Any]
    secret: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class DiscoveredCamera:
    address: str
    xaddrs: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    name: str | None = None
    hardware: str | None = None
    location: str | None = None
    kind: str = "onvif"


@dataclass(frozen=True)
class ProbeResult:
    device: dict[str, Any]
    profiles: list[dict[str, Any]]
    capabilities: list[str]


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class CameraRef:
    """The camera a plugin is asked to act on, with its connection; never the owner's contact details."""

    camera_id: str
    label: str
    connection: CameraConnection
    timezone: str = "UTC"
    # The owner's linked account at the camera's vendor cloud (``connection.kind`` names the provider), if any.
    account: LinkedAccount | None = field(default=None, repr=False)


# A plugin writes a fetched clip to this path and returns it; the vault ingests it through the owner path.
ClipSink = Callable[[Path, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class FetchResult:
    """What a fetch produced: clip files and which part of the window nothing covers."""

    clips: list[Path]
    provenance: dict[str, Any] = field(default_factory=dict)
    missing: list[TimeWindow] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class OwnerNotification:
    """One message to one owner. ``links`` are capability URLs; channels must not log them."""

    owner_id: str
    email: str
    name: str
    phone: str | None
    channels: dict[str, Any]  # {"email": bool, "sms": bool, "webhook_url": str | None}
    subject: str
    text: str
    kind: str  # request | receipt | live_opened | live_closed | ...
    data: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    channel: str
    delivered: bool
    detail: str = ""
    retryable: bool = True


@dataclass(frozen=True)
class EvidenceRecord:
    evidence_id: str
    sha256: str
    size: int
    agency_id: str
    request_id: str | None
    camera_id: str | None
    media: dict[str, Any]
    open_bytes: Callable[[], Awaitable[Any]] | None = None


@dataclass(frozen=True)
class ExportPackage:
    request_id: str
    agency_id: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class Label:
    """One thing seen over a span of the clip: ``start_s``/``end_s`` are offsets from the clip's start, ``box`` is
    [x1, y1, x2, y2] as fractions of the frame (where it was best seen), ``score`` is in [0, 1]."""

    name: str
    start_s: float
    end_s: float
    score: float
    box: tuple[float, float, float, float] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    colour: str | None = None


@dataclass(frozen=True)
class LabelSet:
    """What one analyser saw in one clip, and the SHA-256 of the model file that saw it."""

    analyser: str
    model_sha256: str
    labels: list[Label]
    model_name: str = ""


@dataclass(frozen=True)
class ClipToAnalyse:
    evidence_id: str
    path: Path
    media: dict[str, Any]


@dataclass(frozen=True)
class ModelFile:
    """A model file in place: where, its SHA-256 and size, and where it came from."""

    path: Path
    sha256: str
    size: int
    source: str


@dataclass(frozen=True)
class AnalysisModel:
    """A model file an analysis plugin needs. ``fetch(source, sha256)`` obtains and verifies it: the plugin's
    default when ``source`` is None, else a URL or a local file, refused unless its hash is ``sha256`` when one is
    given; it raises ``PluginError`` saying why, and never replaces a good file with a bad one."""

    analyser: str
    name: str
    path: Path
    pinned_sha256: str | None
    fetch: Callable[[str | None, str | None], ModelFile] = field(repr=False)


# --- accounts at a vendor's cloud (e.g. Ring) ---------------------------------------------------------


@dataclass(frozen=True)
class AccountCredentials:
    """What an owner typed to link an account at a vendor's cloud. Held for the one call, never stored or logged."""

    provider: str
    email: str
    password: str = field(repr=False)
    code: str | None = field(default=None, repr=False)  # the two-factor code, on the second attempt


@dataclass(frozen=True)
class AccountLink:
    """The outcome of a linking attempt. When ``linked``, ``secret`` is all the core keeps (encrypted at rest):
    e.g. a refresh token, never the password. ``code_required``: the vendor sent the owner a verification code;
    ask again with it. ``devices`` are the account's cameras as the owner may register them (ids, names)."""

    linked: bool
    secret: dict[str, Any] = field(default_factory=dict, repr=False)
    code_required: bool = False
    detail: str = ""
    devices: list[dict[str, Any]] = field(default_factory=list)


# Persists an account's rotated secret (a vendor's token updater calls for it); awaited before the plugin goes
# on, since the old secret may stop working. Raises ``Gone`` when the owner unlinked the account meanwhile.
SecretSaver = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class LinkedAccount:
    """The camera owner's linked account, decrypted for the duration of one plugin call."""

    provider: str
    secret: dict[str, Any] = field(repr=False)
    save: SecretSaver | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GeocodedPlace:
    """One answer to an address search: where it is and how the geocoder names it."""

    label: str
    lat: float
    lon: float
    source: str = ""
