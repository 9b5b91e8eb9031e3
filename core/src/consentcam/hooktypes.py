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
    name: str
    start_s: float
    end_s: float
    score: float
    box: tuple[float, float, float, float] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelSet:
    analyser: str
    model_sha256: str
    labels: list[Label]


@dataclass(frozen=True)
class ClipToAnalyse:
    evidence_id: str
    path: Path
    media: dict[str, Any]


@dataclass(frozen=True)
class GeocodedPlace:
    """One answer to an address search: where it is and how the geocoder names it."""

    label: str
    lat: float
    lon: float
    source: str = ""
