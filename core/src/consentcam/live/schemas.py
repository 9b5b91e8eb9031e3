"""Wire models of the live-feed API (``shared/API.md``, "Live feeds"); they also generate its OpenAPI part."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ..schemas import Input, LiveMode, Output, ShortText


class EmergencyCreate(Input):
    area: dict[str, Any] = Field(description="GeoJSON Polygon or {center: {lat, lon}, radius_m}, inside your jurisdiction")
    minutes: float | None = Field(default=None, gt=0, description="how long it lasts; default and limit are settings")
    reason: str = Field(min_length=1, max_length=500)


class EmergencyCreated(Output):
    id: str
    ends_at: datetime


class EmergencyOut(Output):
    id: str
    agency_id: str
    area: dict[str, Any]
    reason: str
    declared_by: str
    started_at: datetime
    ends_at: datetime
    ended_at: datetime | None
    active: bool


class EmergencyList(Output):
    emergencies: list[EmergencyOut]


class LiveSessionCreate(Input):
    camera_id: str = Field(min_length=1, max_length=36)
    reason: str = Field(min_length=1, max_length=500)


class LiveSessionCreated(Output):
    id: str
    playlist_url: str
    ends_at: datetime


class LiveSessionRenew(Input):
    reason: str = Field(min_length=1, max_length=500, description="why the view must go on; audited")


class LiveSessionOut(Output):
    id: str
    camera_id: str
    agency_id: str
    agency: str | None = None
    user_id: str
    who: str | None = Field(default=None, description="as the owner sees it: 'Investigator 2, Chicago PD'")
    reason: str
    live_mode: LiveMode
    emergency_id: str | None
    started_at: datetime
    ends_at: datetime
    renewals: int
    ended_at: datetime | None
    end_reason: str | None
    relay_started_at: datetime | None
    relay_stopped_at: datetime | None
    active: bool
    playlist_url: str | None = None


class PairingCode(Output):
    code: str
    expires_at: datetime


class PairIn(Input):
    code: str = Field(min_length=1, max_length=100)
    label: ShortText | None = None


class Paired(Output):
    device_id: str
    device_key: str = Field(description="shown once; the agent keeps it and authenticates with it")
    core_public_key: str = Field(description="Ed25519 public key (raw, base64) that signs live policy statements")


class EdgeDeviceCameraOut(Output):
    camera_ref: str
    camera_id: str | None
    camera_label: str | None
    live: LiveMode | None


class EdgeDeviceOut(Output):
    id: str
    label: str
    status: str
    live_paused: bool
    connected: bool
    created_at: datetime
    last_seen_at: datetime | None
    cameras: list[EdgeDeviceCameraOut]
    live_sessions: list[LiveSessionOut]


class EdgeDeviceList(Output):
    devices: list[EdgeDeviceOut]


class EdgeDeviceUpdate(Input):
    live_paused: bool | None = None
    label: ShortText | None = None
