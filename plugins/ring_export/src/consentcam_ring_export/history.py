"""A Ring device's history against an asked window: which events start inside it, and what it leaves uncovered.

Ring has no download by time: a device keeps events (motion, ding, on demand), each with a start
(``created_at``), a length (``duration``) and a recording. History pages come newest first; ``older_than`` (an
event id) asks for the page before it. We page back until an event starts before the window, or the history
ends, and take the events that *start* inside the window: an event that began earlier and runs into the window
is reported, not fetched, since its recording lies partly outside what was approved.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consentcam.hooktypes import TimeWindow

log = logging.getLogger(__name__)

HistoryPage = Callable[[int | None], Awaitable[list[dict[str, Any]]]]  # older_than -> one page, newest first


@dataclass(frozen=True)
class RingEvent:
    id: int
    created_at: datetime
    duration_s: float | None
    kind: str
    recording: str | None  # the recording's status ("ready"), or None when the event has none

    @property
    def ends_at(self) -> datetime | None:
        return None if self.duration_s is None else self.created_at + timedelta(seconds=self.duration_s)

    def summary(self) -> dict[str, Any]:
        return {"event_id": str(self.id), "kind": self.kind, "created_at": self.created_at.isoformat(),
                "ends_at": self.ends_at.isoformat() if self.ends_at else None, "duration_s": self.duration_s,
                "recording": self.recording}


def parse_time(value: Any) -> datetime | None:
    """Ring's ``created_at``: ``2026-11-30T08:00:00.000Z`` (or without the fraction). Anything else is None: the
    library would silently turn a bad time into *now*, which could put a wrong event in a window."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def parse_event(entry: Any) -> RingEvent | None:
    """One history entry, or None when it is malformed (it is then counted and reported, never guessed)."""
    if not isinstance(entry, dict):
        return None
    event_id, created = entry.get("id"), parse_time(entry.get("created_at"))
    if not isinstance(event_id, int) or isinstance(event_id, bool) or created is None:
        return None
    duration = entry.get("duration")
    duration_s = float(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0 else None
    recording = entry.get("recording")
    status = recording.get("status") if isinstance(recording, dict) else None
    return RingEvent(event_id, created, duration_s, str(entry.get("kind") or ""), status if isinstance(status, str) else None)


@dataclass
class Scan:
    """What paging back found."""

    inside: list[RingEvent] = field(default_factory=list)        # start inside the window, oldest first
    before: list[RingEvent] = field(default_factory=list)        # started before it but run into it
    pages: int = 0
    seen: int = 0
    malformed: int = 0
    complete: bool = False   # reached an event before the window, or the end of the history
    stopped: str = ""        # why paging stopped short, when it did


async def scan(page: HistoryPage, window: TimeWindow, *, max_pages: int) -> Scan:
    """A short page is not taken as the end (the service may cap the page size): only an empty one is."""
    out = Scan()
    older_than: int | None = None
    while True:
        if out.pages >= max_pages:
            out.stopped = f"stopped after {out.pages} history pages ({out.seen} events) without reaching the window's start"
            break
        entries = await page(older_than)
        out.pages += 1
        if not entries:
            out.complete = True
            break
        oldest: datetime | None = None
        last_id: int | None = None
        for entry in entries:
            event = parse_event(entry)
            if event is None:
                out.malformed += 1
                continue
            out.seen += 1
            last_id = event.id if last_id is None else min(last_id, event.id)
            oldest = event.created_at if oldest is None else min(oldest, event.created_at)
            if window.start <= event.created_at < window.end:
                out.inside.append(event)
            elif event.created_at < window.start and event.ends_at is not None and event.ends_at > window.start:
                out.before.append(event)
        if oldest is not None and oldest < window.start:
            out.complete = True
            break
        if last_id is None or (older_than is not None and last_id >= older_than):
            out.stopped = "the history did not move back in time from one page to the next"
            break
        older_than = last_id
    unique = {e.id: e for e in out.inside}
    out.inside = sorted(unique.values(), key=lambda e: (e.created_at, e.id))
    out.before = sorted({e.id: e for e in out.before}.values(), key=lambda e: (e.created_at, e.id))
    return out


def uncovered(window: TimeWindow, spans: Iterable[tuple[datetime, datetime]]) -> list[TimeWindow]:
    """The parts of ``window`` that no span covers, in order."""
    gaps: list[TimeWindow] = []
    cursor = window.start
    for start, end in sorted(spans):
        start, end = max(start, window.start), min(end, window.end)
        if end <= cursor:
            continue
        if start > cursor:
            gaps.append(TimeWindow(cursor, start))
        cursor = max(cursor, end)
        if cursor >= window.end:
            break
    if cursor < window.end:
        gaps.append(TimeWindow(cursor, window.end))
    return gaps


def mp4_duration_s(path: Path) -> float | None:
    """The movie's duration from its ``mvhd`` box, for an event whose history entry gives none; None if unreadable."""
    try:
        with path.open("rb") as f:
            return _find_mvhd(f, path.stat().st_size)
    except OSError:
        return None


def _find_mvhd(f: Any, end: int, depth: int = 0) -> float | None:
    while f.tell() + 8 <= end:
        start = f.tell()
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = end - start
        if size < header:
            return None
        if kind == b"moov" and depth == 0:
            return _find_mvhd(f, start + size, 1)
        if kind == b"mvhd":
            version = f.read(1)[0]
            f.read(3)
            if version == 1:
                _, _, timescale, duration = struct.unpack(">QQIQ", f.read(28))
            else:
                _, _, timescale, duration = struct.unpack(">IIII", f.read(16))
            return duration / timescale if timescale else None
        f.seek(start + size)
    return None
