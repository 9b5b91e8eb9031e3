"""Paging back through a device's history and the arithmetic of coverage, without a network: pages served from
a list, malformed entries, a history that does not move back, and the MP4 duration read from ``mvhd``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consentcam.hooktypes import TimeWindow
from consentcam_ring_export.history import mp4_duration_s, parse_event, parse_time, scan, uncovered
from ring_testkit import make_clip

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def entry(i: int, minute: float, duration: float | None = 10.0) -> dict:
    out = {"id": 1000 + i, "created_at": (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
           "kind": "motion", "recording": {"status": "ready"}}
    if duration is not None:
        out["duration"] = duration
    return out


def pages_of(entries: list[dict], size: int):  # noqa: ANN201
    ordered = sorted(entries, key=lambda e: e["id"], reverse=True)
    asked: list[int | None] = []

    async def page(older_than: int | None) -> list[dict]:
        asked.append(older_than)
        rest = [e for e in ordered if older_than is None or e["id"] < older_than]
        return rest[:size]

    return page, asked


def test_times_and_entries_are_parsed_strictly():
    assert parse_time("2026-01-01T12:00:00.000Z") == T0 and parse_time("2026-01-01T12:00:00Z") == T0
    for bad in ("2026-01-01 12:00:00", "2026-01-01T12:00:00+00:00", None, 5, "yesterday"):
        assert parse_time(bad) is None
    assert parse_event(entry(1, 0)).duration_s == 10.0
    assert parse_event(entry(1, 0, None)).duration_s is None
    for bad in ({"id": "1", "created_at": "2026-01-01T12:00:00Z"}, {"id": True, "created_at": "2026-01-01T12:00:00Z"},
                {"id": 1, "created_at": "soon"}, [], "x"):
        assert parse_event(bad) is None


async def test_scan_pages_back_until_an_event_before_the_window():
    entries = [entry(i, m) for i, m in enumerate([0, 5, 10, 15, 20, 25, 30])]
    page, asked = pages_of(entries, 2)
    found = await scan(page, TimeWindow(T0 + timedelta(minutes=9), T0 + timedelta(minutes=21)), max_pages=50)
    assert [e.id for e in found.inside] == [1002, 1003, 1004] and found.complete
    assert asked == [None, 1005, 1003]  # newest first, then older_than the oldest id seen; 5 min is before 9
    assert [e.id for e in found.before] == []


async def test_scan_reports_malformed_entries_a_stuck_history_and_the_page_limit():
    entries = [entry(i, m) for i, m in enumerate([0, 10, 20])] + [{"id": 5000, "created_at": "garbage"}]
    page, _ = pages_of(entries, 10)
    found = await scan(page, TimeWindow(T0 + timedelta(minutes=5), T0 + timedelta(minutes=15)), max_pages=5)
    assert [e.id for e in found.inside] == [1001] and found.malformed == 1 and found.complete

    async def stuck(older_than: int | None) -> list[dict]:
        return [entry(9, 30)]  # the same page whatever is asked

    found = await scan(stuck, TimeWindow(T0, T0 + timedelta(minutes=10)), max_pages=5)
    assert not found.complete and "did not move back" in found.stopped and found.pages == 2
    page, _ = pages_of([entry(i, 100 - i) for i in range(20)], 2)
    found = await scan(page, TimeWindow(T0, T0 + timedelta(minutes=10)), max_pages=3)
    assert not found.complete and found.pages == 3 and "stopped after 3 history pages" in found.stopped


def test_uncovered_is_the_window_minus_the_spans():
    w = TimeWindow(T0, T0 + timedelta(minutes=10))
    m = lambda x: T0 + timedelta(minutes=x)  # noqa: E731
    assert uncovered(w, []) == [w]
    assert uncovered(w, [(m(-1), m(11))]) == []
    assert uncovered(w, [(m(2), m(3)), (m(2.5), m(4)), (m(8), m(12))]) == [TimeWindow(m(0), m(2)), TimeWindow(m(4), m(8))]


def test_the_mp4_duration_comes_from_its_movie_header(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", "red", 2.5, "x")
    assert abs(mp4_duration_s(clip) - 2.5) < 0.11
    (tmp_path / "not.mp4").write_bytes(b"\x00\x00\x00\x08free" + b"\x00" * 10)
    assert mp4_duration_s(tmp_path / "not.mp4") is None and mp4_duration_s(tmp_path / "missing.mp4") is None
