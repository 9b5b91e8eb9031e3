"""Playback URLs by time: the URL families of common recorders, a template the owner fills in, and time zones.

A camera's connection (API.md) is ``{kind: "rtsp", url, playback?: {family, template?, timezone, channel?}}``.
``url`` is the live stream; it also gives the recorder's scheme, host and port. Without ``playback`` the camera
is live only.

Templates are ``str.format`` strings. The times are ``datetime`` objects in the recorder's time zone, so any
``strftime`` pattern works after a colon: ``{start:%Y%m%dT%H%M%S}``. Names available:

- ``start``, ``end``: the window in the recorder's local time; ``start_utc``, ``end_utc``: in UTC;
- ``start_epoch``, ``end_epoch``: Unix seconds; ``duration_s``: whole seconds; ``channel``: ``playback.channel``
  (default 1).

A template is a path (``/...``, joined to ``url``'s scheme, host and port) or a whole ``rtsp://`` URL.

Time zones: recorders read times in their own clock's zone, and most keep local time. ``playback.timezone``
(an IANA name such as ``America/Chicago``) says which; without it the camera's zone, then UTC. Quirk: Hikvision
writes a ``Z`` after the time, yet many of its recorders read the digits as local time; set ``timezone: UTC``
only for one that reads it as UTC. URLs carry whole seconds, so the window is widened to whole seconds (start
rounded down, end up). When a window touches a repeated local hour (the end of daylight saving time) the
digits are ambiguous to the recorder, and across a change of offset its local length differs from the real
one; ``PlaybackRequest.notes`` says so, and the fetch reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FAMILIES: dict[str, str] = {
    # /Streaming/tracks/<channel><stream 01 = main>; the trailing Z is literal (see the module docstring).
    "hikvision": "/Streaming/tracks/{channel}01?starttime={start:%Y%m%dT%H%M%S}Z&endtime={end:%Y%m%dT%H%M%S}Z",
    "dahua": "/cam/playback?channel={channel}&starttime={start:%Y_%m_%d_%H_%M_%S}&endtime={end:%Y_%m_%d_%H_%M_%S}",
}
GENERIC = "template"


class PlaybackConfigError(ValueError):
    """The camera's playback settings cannot make a URL (unknown family or zone, bad template)."""


@dataclass(frozen=True)
class PlaybackConfig:
    family: str
    template: str
    timezone: str
    channel: int | str = 1

    @property
    def zone(self) -> tzinfo:
        return zone_named(self.timezone)


@dataclass(frozen=True)
class PlaybackRequest:
    """One playback URL (without credentials) and the window it asks for, in UTC and in the recorder's time."""

    url: str
    start: datetime  # UTC, whole seconds
    end: datetime
    local_start: datetime
    local_end: datetime
    family: str
    timezone: str
    notes: tuple[str, ...] = field(default=())

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def zone_named(name: str) -> tzinfo:
    if name.upper() in {"UTC", "Z", "ETC/UTC"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PlaybackConfigError(f"unknown time zone {name!r} (use an IANA name such as America/Chicago)") from exc


def playback_config(fields: dict[str, Any], camera_timezone: str = "UTC") -> PlaybackConfig | None:
    """The camera's playback settings, or None for a live-only camera. Raises ``PlaybackConfigError``."""
    raw = fields.get("playback")
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise PlaybackConfigError("playback must be an object: {family, template?, timezone, channel?}")
    family = str(raw.get("family") or GENERIC).lower()
    if family == GENERIC:
        template = raw.get("template")
        if not isinstance(template, str) or not template.strip():
            raise PlaybackConfigError("playback family 'template' needs a 'template'")
    elif family in FAMILIES:
        template = raw.get("template") or FAMILIES[family]  # a vendor may override its family's default
    else:
        raise PlaybackConfigError(f"unknown playback family {family!r}; use one of {sorted([*FAMILIES, GENERIC])}")
    config = PlaybackConfig(family, template, str(raw.get("timezone") or camera_timezone or "UTC"),
                            raw.get("channel", 1))
    config.zone  # noqa: B018 - fail now on an unknown zone, not at the first fetch
    return config


def whole_seconds(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The smallest whole-second window holding [start, end], in UTC."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    floor = start.replace(microsecond=0)
    ceil = end.replace(microsecond=0) + (timedelta(seconds=1) if end.microsecond else timedelta(0))
    return floor, ceil


def local_time_notes(start_local: datetime, end_local: datetime, real_seconds: float, zone_name: str) -> list[str]:
    notes = []
    for label, moment in (("start", start_local), ("end", end_local)):
        other = moment.replace(fold=1 - moment.fold)
        if other.utcoffset() != moment.utcoffset():
            notes.append(f"the {label} {moment:%Y-%m-%d %H:%M:%S} falls in a repeated hour in {zone_name}: the recorder "
                         "may read it as the other occurrence")
    local_seconds = (end_local.replace(tzinfo=None) - start_local.replace(tzinfo=None)).total_seconds()
    if not math.isclose(local_seconds, real_seconds):
        notes.append(f"the window crosses a change of UTC offset in {zone_name}: its local times span {local_seconds:.0f} s "
                     f"for {real_seconds:.0f} s of real time")
    return notes


def build_playback(config: PlaybackConfig, camera_url: str, start: datetime, end: datetime) -> PlaybackRequest:
    """The playback URL for [start, end] (aware datetimes) on the recorder behind ``camera_url``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window times must carry their UTC offset")
    start_utc, end_utc = whole_seconds(start, end)
    zone = config.zone
    local_start, local_end = start_utc.astimezone(zone), end_utc.astimezone(zone)
    values = {
        "start": local_start, "end": local_end, "start_utc": start_utc, "end_utc": end_utc,
        "start_epoch": int(start_utc.timestamp()), "end_epoch": int(end_utc.timestamp()),
        "duration_s": int((end_utc - start_utc).total_seconds()), "channel": config.channel,
    }
    try:
        filled = config.template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise PlaybackConfigError(f"the playback template cannot be filled in: {exc!r}") from exc
    url = join_to_camera(camera_url, filled)
    notes = local_time_notes(local_start, local_end, (end_utc - start_utc).total_seconds(), config.timezone)
    return PlaybackRequest(url, start_utc, end_utc, local_start, local_end, config.family, config.timezone, tuple(notes))


def join_to_camera(camera_url: str, filled: str) -> str:
    """A filled template as a whole URL: a path takes the camera URL's scheme, host and port; userinfo is dropped
    (credentials live encrypted in the connection's secret and are added only when connecting)."""
    if filled.startswith("/"):
        base = urlsplit(camera_url)
        if base.scheme not in {"rtsp", "rtsps"} or not _host_port(base):
            raise PlaybackConfigError("the camera's url must be rtsp://host[:port]/... to join a playback path to it")
        path, _, query = filled.partition("?")
        return urlunsplit((base.scheme, _host_port(base), path, query, ""))
    parts = urlsplit(filled)
    if parts.scheme not in {"rtsp", "rtsps"} or not _host_port(parts):
        raise PlaybackConfigError("a playback template is a path (/...) or an rtsp:// URL")
    return urlunsplit(parts._replace(netloc=_host_port(parts)))


def _host_port(parts: Any) -> str:
    # The messages never quote the URL: an owner's password pasted with a raw '/' or '@' makes what urlsplit
    # takes for the host or port a piece of the password.
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        raise PlaybackConfigError("the URL's host or port cannot be read (are special characters in the "
                                  "password percent-encoded?)") from None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}" if port else host
