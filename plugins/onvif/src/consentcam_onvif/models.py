"""Plain values the device class returns: what a camera is, what it streams, what it recorded."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DeviceFacts:
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MediaProfile:
    """One media profile. ``stream_uri`` never holds credentials (see ``device.OnvifDevice.profiles``)."""

    token: str
    name: str
    encoding: str | None
    width: int | None
    height: int | None
    fps: float | None
    stream_uri: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recording:
    """A recording on the device's storage and the span it holds (``start`` to ``end``, UTC)."""

    token: str
    start: datetime
    end: datetime
    source: str = ""


@dataclass(frozen=True)
class Services:
    """Which optional services the device lists, and where."""

    xaddrs: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        from .const import SERVICE_NAMES

        return sorted(name for namespace, name in SERVICE_NAMES.items() if namespace in self.xaddrs)

    @property
    def can_replay(self) -> bool:
        return {"search", "replay"} <= set(self.names)
