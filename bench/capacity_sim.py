"""Capacity model of a state-wide or national deployment (issue 11), calibrated on this machine in the same run.

    .venv/bin/python bench/capacity_sim.py --scope nation      # 10M cameras, 18,000 agencies (the default)
    .venv/bin/python bench/capacity_sim.py --scope state       # 500k cameras, 400 agencies
    .venv/bin/python bench/capacity_sim.py --scope nation --no-calibrate   # the simulation alone, with the
                                                                           # reference costs in REFERENCE below

Two parts, both in one run:

1. **Calibration** of ONE shard with the real code: a PostgreSQL (PostGIS) and a SQLite registry of
   ``--shard-cameras`` synthetic cameras (built and cached by bench/match_bench.py's builders), on which it times
   ``services.requests.match_cameras`` over fences (fitted as fixed + per matched camera), ``create_request``
   fanning out to 10,000 cameras (per item), ``services.map.map_read`` over viewports (fixed + per feature),
   concurrent ``audit.record`` appends under the chain lock (the serialisation point: appends/s of one chain),
   the outbox alone (no-op jobs claimed and finished: database time per job), the outbox worker delivering
   ``notify.request`` mail to a local SMTP server (jobs/s per worker), the real ``consentcam serve`` (server CPU
   per API call and per map read), and in a
   child process a bare aiohttp server (CPU per HTTP request, memory per idle WebSocket, CPU per relayed MB) and
   the upload ingest proxy (SHA-256 + write, MB/s per core).
2. **Simulation** of one day of a deployment over a synthetic population (metros of Zipf-distributed sizes,
   neighbourhoods, a rural background; agencies: one state/national police, city departments, suburban
   departments, county sheriffs), sharded by region cell: quadtree cells of a lat/lon grid (Morton order), split
   where cameras or requests are dense, then packed in Morton order into shards (each shard is a contiguous range
   of the space-filling curve). Every request fence, map viewport and upload is placed, its cameras counted on a
   ~100 m grid, and charged to the shards it touches minute by minute; the peak minute of each shard and tier
   is compared with the calibrated single-shard capacity.

The population, the layout and the load are deterministic given ``--seed``; the capacities are measured, so
the ratios move with the machine's load (the load average is printed). See docs/admins/capacity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform as host
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

FINE = 18  # the counting grid: 2^18 cells around the globe (~105 m x 76 m at 40 degrees)
COARSE = 13  # where fence centres are drawn from (~3.4 km x 2.4 km)
MAP_LEVEL = 15  # viewports are counted on this grid (~850 m x 610 m)
MIN_LEAF = 6  # the coarsest cell a shard layout starts from
CONSENT_REQUESTS = 0.96 * 0.60 * 0.92  # active x grants requests x grant not expired (bench/common.py's mix)
CONSENT_MAP = 0.96 * 0.68 * 0.92  # active x grants map x not expired
CAMERAS_PER_OWNER = 1.5
AUDIT_PER_REQUEST = 2  # request.created + request.opened (approval adds one more when the agency requires it)
AUDIT_PER_CLIP = 3  # the owner's answer, custody.received, custody.verified
CHUNK_MB = 8.0  # resumable upload chunk
T0 = time.perf_counter()

# Per-operation costs measured by this script on the 2-core development box (PostgreSQL, 100k cameras, load average 3-8):
# used only with --no-calibrate, so the simulation can be run (and its layout studied) without a database.
REFERENCE: dict[str, Any] = {
    "match": {"wall_a_ms": 1.05, "wall_b_ms": 0.0072, "cpu_a_ms": 0.69, "cpu_b_ms": 0.0024},
    "fanout": {"wall_per_item_ms": 0.068, "cpu_per_item_ms": 0.024},
    "map": {"wall_a_ms": 13.8, "wall_b_ms": 0.052, "cpu_a_ms": 6.8, "cpu_b_ms": 0.043, "web_cpu_b_ms": 0.075},
    "audit": {"appends_per_s_0": 547.0, "appends_per_s_n": 108.0, "n_ids": 500, "hold_a_ms": 1.83, "hold_b_ms": 0.0148},
    "drain": {"jobs_per_s": 132.0, "cpu_per_job_ms": 5.9},
    "jobs": {"db_ms_per_job": 2.6},
    "http": {"cpu_per_request_ms": 1.25, "ws_kb_per_conn": 14.8, "relay_cpu_ms_per_mb": 1.43},
    "ingest": {"mb_per_s_core": 386.0},
    "db_parallelism": 2.0,
}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


# --- Morton (Z-order) codes of a lat/lon quadtree ---------------------------------------------------------


def _spread(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                        (2, 0x3333333333333333), (1, 0x5555555555555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (_spread(x) | (_spread(y) << np.uint64(1))).astype(np.int64)


def grid_xy(lat: np.ndarray | float, lon: np.ndarray | float, level: int) -> tuple[np.ndarray, np.ndarray]:
    n = float(1 << level)
    x = np.floor((np.asarray(lon) + 180.0) / 360.0 * n).astype(np.int64)
    y = np.floor((np.asarray(lat) + 90.0) / 180.0 * n).astype(np.int64)
    return x, y


def cell_m(level: int, lat: float) -> tuple[float, float]:
    """Width and height of a cell in metres at a latitude."""
    n = float(1 << level)
    return 360.0 / n * 111_320.0 * math.cos(math.radians(lat)), 180.0 / n * 110_574.0


# --- the synthetic population -------------------------------------------------------------------------------

SCOPES = {
    # a state the size of Illinois; a nation the size of the contiguous United States
    "state": {"cameras": 500_000, "agencies": 400, "centre": (40.0, -89.2), "width_km": 340.0, "height_km": 620.0,
              "metros": 14, "rural_share": 0.15},
    "nation": {"cameras": 10_000_000, "agencies": 18_000, "centre": (37.5, -96.0), "width_km": 4_500.0,
               "height_km": 2_600.0, "metros": 380, "rural_share": 0.12},
}


@dataclass
class Population:
    lat: np.ndarray  # cameras, sorted by fine Morton code
    lon: np.ndarray
    code: np.ndarray  # fine Morton code of each camera (sorted)
    fine_codes: np.ndarray  # distinct fine cells with cameras
    fine_counts: np.ndarray
    coarse_codes: np.ndarray
    coarse_start: np.ndarray  # index into the camera arrays
    coarse_counts: np.ndarray
    metro_lat: np.ndarray
    metro_lon: np.ndarray
    metro_r_m: np.ndarray
    metro_share: np.ndarray
    box: tuple[float, float, float, float]  # min_lat, min_lon, max_lat, max_lon

    def count_fine(self, codes: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.fine_codes, codes)
        i = np.minimum(i, len(self.fine_codes) - 1)
        return np.where(self.fine_codes[i] == codes, self.fine_counts[i], 0)

    def count_coarse(self, codes: np.ndarray) -> np.ndarray:
        i = np.minimum(np.searchsorted(self.coarse_codes, codes), len(self.coarse_codes) - 1)
        return np.where(self.coarse_codes[i] == codes, self.coarse_counts[i], 0)


def make_population(args: argparse.Namespace, rng: np.random.Generator) -> Population:
    clat, clon = args.centre
    half_lat = args.height_km * 500.0 / 110_574.0
    half_lon = args.width_km * 500.0 / (111_320.0 * math.cos(math.radians(clat)))
    box = (clat - half_lat, clon - half_lon, clat + half_lat, clon + half_lon)
    n, m = args.cameras, args.metros
    share = rng.pareto(1.1, m) + 1.0  # Zipf-like metro sizes
    share = np.sort(share)[::-1] / share.sum()
    m_lat = rng.uniform(box[0] + 0.05 * 2 * half_lat, box[2] - 0.05 * 2 * half_lat, m)
    m_lon = rng.uniform(box[1] + 0.05 * 2 * half_lon, box[3] - 0.05 * 2 * half_lon, m)
    m_r = np.clip(8_000.0 * (share * m / 2.0) ** 0.4, 3_000.0, 45_000.0)  # metro radius in metres
    rural = int(n * args.rural_share)
    per_metro = rng.multinomial(n - rural, share)
    which = np.repeat(np.arange(m), per_metro)
    k = len(which)
    # core 25%, 12 neighbourhoods per metro 55%, suburbs 20%
    part = rng.choice(3, size=k, p=[0.25, 0.55, 0.20])
    hoods = 12
    h_dx = rng.uniform(-0.75, 0.75, (m, hoods)) * m_r[:, None]
    h_dy = rng.uniform(-0.75, 0.75, (m, hoods)) * m_r[:, None]
    h_s = rng.uniform(0.04, 0.12, (m, hoods)) * m_r[:, None]
    pick = rng.integers(0, hoods, k)
    r = m_r[which]
    sigma = np.where(part == 0, 0.12 * r, np.where(part == 1, h_s[which, pick], 0.45 * r))
    cx = np.where(part == 1, h_dx[which, pick], 0.0)
    cy = np.where(part == 1, h_dy[which, pick], 0.0)
    dx = rng.normal(cx, sigma)
    dy = rng.normal(cy, sigma)
    lat = m_lat[which] + dy / 110_574.0
    lon = m_lon[which] + dx / (111_320.0 * np.cos(np.radians(m_lat[which])))
    lat = np.concatenate([lat, rng.uniform(box[0], box[2], rural)])
    lon = np.concatenate([lon, rng.uniform(box[1], box[3], rural)])
    lat = np.clip(lat, box[0], box[2])
    lon = np.clip(lon, box[1], box[3])
    code = morton(*grid_xy(lat, lon, FINE))
    order = np.argsort(code, kind="stable")
    lat, lon, code = lat[order], lon[order], code[order]
    fine_codes, fine_counts = np.unique(code, return_counts=True)
    coarse = code >> np.int64(2 * (FINE - COARSE))
    coarse_codes, coarse_start, coarse_counts = np.unique(coarse, return_index=True, return_counts=True)
    return Population(lat, lon, code, fine_codes, fine_counts, coarse_codes, coarse_start, coarse_counts,
                      m_lat, m_lon, m_r, share, box)


@dataclass
class Agencies:
    kind: list[str]
    box: np.ndarray  # (A, 4): min_lat, min_lon, max_lat, max_lon
    cameras: np.ndarray  # cameras inside the jurisdiction
    cells: list[np.ndarray]  # coarse cells of the jurisdiction holding cameras
    weights: list[np.ndarray]


def _box_around(lat: float, lon: float, half_m: float) -> list[float]:
    dlat, dlon = half_m / 110_574.0, half_m / (111_320.0 * math.cos(math.radians(lat)))
    return [lat - dlat, lon - dlon, lat + dlat, lon + dlon]


def coarse_cells_in(pop: Population, box: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x0, y0 = grid_xy(box[0], box[1], COARSE)
    x1, y1 = grid_xy(box[2], box[3], COARSE)
    xs, ys = np.meshgrid(np.arange(int(x0), int(x1) + 1), np.arange(int(y0), int(y1) + 1))
    codes = morton(xs.ravel(), ys.ravel())
    counts = pop.count_coarse(codes)
    keep = counts > 0
    return codes[keep], counts[keep]


def make_agencies(args: argparse.Namespace, pop: Population, rng: np.random.Generator) -> Agencies:
    a = args.agencies
    kinds: list[str] = ["state police"]
    boxes: list[list[float]] = [list(pop.box)]
    n_metro = int((a - 1) * 0.72)
    n_county = a - 1 - n_metro
    # every metro has its city department; the other metro agencies go to metros by size^0.7 (suburbs)
    m = len(pop.metro_share)
    city = min(m, n_metro)
    extra = rng.multinomial(n_metro - city, pop.metro_share[:m] ** 0.7 / (pop.metro_share[:m] ** 0.7).sum())
    for j in range(city):
        kinds.append("city")
        boxes.append(_box_around(pop.metro_lat[j], pop.metro_lon[j], 0.55 * pop.metro_r_m[j]))
        for _ in range(extra[j]):
            ang, dist = rng.uniform(0, 2 * math.pi), pop.metro_r_m[j] * rng.uniform(0.4, 1.2)
            lat = pop.metro_lat[j] + dist * math.sin(ang) / 110_574.0
            lon = pop.metro_lon[j] + dist * math.cos(ang) / (111_320.0 * math.cos(math.radians(pop.metro_lat[j])))
            kinds.append("suburb")
            boxes.append(_box_around(lat, lon, pop.metro_r_m[j] * rng.uniform(0.08, 0.2)))
    for _ in range(n_county):
        lat = rng.uniform(pop.box[0], pop.box[2])
        lon = rng.uniform(pop.box[1], pop.box[3])
        kinds.append("county")
        boxes.append(_box_around(lat, lon, rng.uniform(12_000.0, 28_000.0)))
    cells, weights, cams = [], [], []
    for b in boxes:
        c, w = coarse_cells_in(pop, b)
        cells.append(c)
        weights.append(w)
        cams.append(int(w.sum()))
    return Agencies(kinds, np.array(boxes), np.array(cams), cells, weights)


def diurnal_minutes(rng: np.random.Generator, n: int, lon: np.ndarray, peak_hour: float) -> np.ndarray:
    """UTC minute of the day: local time drawn from a day curve peaking at ``peak_hour``, shifted by longitude."""
    local = np.arange(1440) / 60.0
    pdf = 1.0 + 0.9 * np.cos((local - peak_hour) / 24.0 * 2 * math.pi)
    pdf /= pdf.sum()
    minute = rng.choice(1440, size=n, p=pdf)
    return ((minute - np.round(np.asarray(lon) / 15.0 * 60.0).astype(np.int64)) % 1440).astype(np.int64)


def draw_points(pop: Population, ag: Agencies, who: np.ndarray, rng: np.random.Generator,
                jitter_m: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Points where an agency's users draw: at a camera of its jurisdiction, chosen by coarse-cell weight."""
    lat = np.empty(len(who))
    lon = np.empty(len(who))
    order = np.argsort(who, kind="stable")
    groups, first = np.unique(who[order], return_index=True)
    bounds = np.append(first, len(who))
    for g, a in enumerate(groups):
        idx = order[bounds[g]:bounds[g + 1]]
        w = ag.weights[a]
        if len(w) == 0:
            b = ag.box[a]
            lat[idx] = rng.uniform(b[0], b[2], len(idx))
            lon[idx] = rng.uniform(b[1], b[3], len(idx))
            continue
        cell = rng.choice(len(w), size=len(idx), p=w / w.sum())
        j = np.searchsorted(pop.coarse_codes, ag.cells[a][cell])
        cam = pop.coarse_start[j] + (rng.uniform(0, 1, len(idx)) * pop.coarse_counts[j]).astype(np.int64)
        lat[idx] = pop.lat[cam]
        lon[idx] = pop.lon[cam]
    lat += rng.normal(0, jitter_m, len(who)) / 110_574.0
    lon += rng.normal(0, jitter_m, len(who)) / (111_320.0 * np.cos(np.radians(lat)))
    return lat, lon


# --- one day of work ------------------------------------------------------------------------------------------


@dataclass
class Day:
    req_agency: np.ndarray
    req_minute: np.ndarray
    req_lat: np.ndarray
    req_lon: np.ndarray
    req_radius: np.ndarray
    req_cells: list[np.ndarray]  # fine cells of each fence (all, empty or not)
    req_cell_cams: list[np.ndarray]
    req_cameras: np.ndarray  # all cameras in the fence
    map_agency: np.ndarray
    map_minute: np.ndarray
    map_codes: np.ndarray  # (n, k) MAP_LEVEL cells of each viewport
    map_cameras: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)


def fence_cells(lat: float, lon: float, radius: float) -> np.ndarray:
    wx, wy = cell_m(FINE, lat)
    n = float(1 << FINE)
    fx = (lon + 180.0) / 360.0 * n
    fy = (lat + 90.0) / 180.0 * n
    rx, ry = radius / wx, radius / wy
    xs = np.arange(math.floor(fx - rx), math.floor(fx + rx) + 1)
    ys = np.arange(math.floor(fy - ry), math.floor(fy + ry) + 1)
    gx, gy = np.meshgrid(xs, ys)
    inside = (((gx + 0.5 - fx) * wx) ** 2 + ((gy + 0.5 - fy) * wy) ** 2) <= radius ** 2
    if not inside.any():
        inside[np.abs(gy - math.floor(fy)) + np.abs(gx - math.floor(fx)) == 0] = True
    return morton(gx[inside], gy[inside])


def simulate_day(args: argparse.Namespace, pop: Population, ag: Agencies, rng: np.random.Generator) -> Day:
    a = len(ag.kind)
    # an agency's requests grow with the cameras it can ask (square root: big departments ask more, not linearly)
    w = np.sqrt(np.maximum(ag.cameras, 1).astype(float))
    w[0] *= 3.0  # the state/national police works everywhere
    rate = args.requests_per_agency_day * a * w / w.sum()
    n_req = rng.poisson(rate)
    who = np.repeat(np.arange(a), n_req)
    lat, lon = draw_points(pop, ag, who, rng)
    minute = diurnal_minutes(rng, len(who), lon, 14.0)
    circle = rng.uniform(0, 1, len(who)) < args.circle_share
    radius = np.where(circle, rng.uniform(args.fence_radius_min, args.fence_radius_max, len(who)),
                      np.sqrt(rng.uniform(0.25, 1.0, len(who)) * args.fence_km2 * 1e6 / math.pi))
    cells, cams, total = [], [], np.empty(len(who), dtype=np.int64)
    for i in range(len(who)):
        c = fence_cells(float(lat[i]), float(lon[i]), float(radius[i]))
        k = pop.count_fine(c)
        cells.append(c)
        cams.append(k)
        total[i] = int(k.sum())
    # map reads: a viewport of about --map-viewport-km on a side, on the MAP_LEVEL grid
    n_map = rng.poisson(args.map_reads_per_agency_day * np.ones(a) * w / w.mean())
    mwho = np.repeat(np.arange(a), n_map)
    mlat, mlon = draw_points(pop, ag, mwho, rng, jitter_m=300.0)
    mminute = diurnal_minutes(rng, len(mwho), mlon, 13.0)
    cw, ch = cell_m(MAP_LEVEL, args.centre[0])
    kx, ky = max(1, round(args.map_viewport_km * 1000 / cw)), max(1, round(args.map_viewport_km * 1000 / ch))
    x0, y0 = grid_xy(mlat, mlon, MAP_LEVEL)
    ox, oy = np.meshgrid(np.arange(kx) - kx // 2, np.arange(ky) - ky // 2)
    mcodes = morton((x0[:, None] + ox.ravel()[None, :]), (y0[:, None] + oy.ravel()[None, :]))
    shift = np.int64(2 * (FINE - MAP_LEVEL))
    level_codes, level_counts = np.unique(pop.code >> shift, return_counts=True)
    idx = np.minimum(np.searchsorted(level_codes, mcodes), len(level_codes) - 1)
    mcams = np.where(level_codes[idx] == mcodes, level_counts[idx], 0)
    return Day(who, minute, lat, lon, radius, cells, cams, total, mwho, mminute, mcodes, mcams.sum(axis=1))


# --- the shard layout -----------------------------------------------------------------------------------------


@dataclass
class Layout:
    starts: np.ndarray  # first fine Morton code of each shard (sorted); shard i covers [starts[i], starts[i+1])
    leaves: int
    leaf_levels: dict[int, int]

    def shard_of(self, codes: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, codes, side="right") - 1


def plan_shards(args: argparse.Namespace, pop: Population, day: Day) -> Layout:
    """Quadtree leaves (split while a cell holds more than 1/8 of a shard's budget of cameras or requests), then
    packed in Morton order into shards up to the budget. Deterministic: budgets are in cameras and requests/day,
    not in measured seconds."""
    req_codes = np.array([c[len(c) // 2] for c in day.req_cells], dtype=np.int64) if day.req_cells else np.zeros(0, np.int64)
    req_sorted = np.sort(req_codes)
    max_cams, max_req = args.shard_max_cameras, args.shard_max_requests_day
    leaves: list[tuple[int, int, int, int]] = []  # (first fine code, level, cameras, requests)

    def counts(lo: int, hi: int) -> tuple[int, int]:
        c = int(np.searchsorted(pop.code, hi) - np.searchsorted(pop.code, lo))
        r = int(np.searchsorted(req_sorted, hi) - np.searchsorted(req_sorted, lo))
        return c, r

    # start from the MIN_LEAF cells that hold cameras
    shift = 2 * (FINE - MIN_LEAF)
    stack = [(int(c) << shift, MIN_LEAF) for c in np.unique(pop.code >> np.int64(shift))[::-1]]
    while stack:
        lo, level = stack.pop()
        span = 1 << (2 * (FINE - level))
        c, r = counts(lo, lo + span)
        if c == 0 and r == 0:
            continue
        if level < FINE - 4 and (c > max_cams / 8 or r > max_req / 8):
            child = span >> 2
            stack.extend((lo + q * child, level + 1) for q in (3, 2, 1, 0))
            continue
        leaves.append((lo, level, c, r))
    leaves.sort()
    starts, cams, reqs = [], 0, 0
    for lo, _level, c, r in leaves:
        if not starts or cams + c > max_cams or reqs + r > max_req:
            starts.append(lo)
            cams, reqs = 0, 0
        cams += c
        reqs += r
    starts[0] = 0  # the first shard also owns the empty space before it (nothing is lost at the edges)
    levels: dict[int, int] = {}
    for _, level, _, _ in leaves:
        levels[level] = levels.get(level, 0) + 1
    return Layout(np.array(starts, dtype=np.int64), len(leaves), dict(sorted(levels.items())))


# --- charging the day to shards and tiers -------------------------------------------------------------------


def charge(args: argparse.Namespace, cal: dict[str, Any], pop: Population, ag: Agencies, day: Day, layout: Layout,
           rng: np.random.Generator) -> dict[str, Any]:
    s = len(layout.starts)
    M = 1440
    parts = {k: np.zeros((s, M)) for k in ("requests", "jobs", "map reads", "answers")}  # DB seconds per minute
    audit_n = np.zeros((s, M))  # audit appends
    audit_hold = np.zeros((s, M))  # seconds the chain lock is held
    jobs = np.zeros((s, M))  # jobs enqueued (notifications)
    job_db = np.zeros((s, M))  # DB seconds of claiming and finishing them, at enqueue time
    web_cpu = np.zeros(M)  # core-seconds in web processes
    http = np.zeros(M)  # HTTP requests
    upload_mb = np.zeros(M)
    mc, fo, mp, au = cal["match"], cal["fanout"], cal["map"], cal["audit"]
    http_cpu = cal["http"]["cpu_per_request_ms"] / 1e3
    fanouts = np.zeros(len(day.req_agency), dtype=np.int64)
    items_per_req = np.zeros(len(day.req_agency))
    cross_items = 0
    total_items = 0
    bucket_mb = np.zeros(len(ag.kind))
    clip_minutes: list[np.ndarray] = []
    clip_agency: list[np.ndarray] = []
    clip_shard: list[np.ndarray] = []
    for i in range(len(day.req_agency)):
        sh = layout.shard_of(day.req_cells[i])
        touched, inv = np.unique(sh, return_inverse=True)
        fanouts[i] = len(touched)
        per_shard_cams = np.bincount(inv, weights=day.req_cell_cams[i], minlength=len(touched))
        t = day.req_minute[i]
        items_i = 0.0
        for j, shard in enumerate(touched):
            matched = per_shard_cams[j] * CONSENT_REQUESTS
            cost = (mc["wall_a_ms"] + mc["wall_b_ms"] * matched) + fo["wall_per_item_ms"] * matched
            cpu = (mc["cpu_a_ms"] + mc["cpu_b_ms"] * matched) + fo["cpu_per_item_ms"] * matched
            parts["requests"][shard, t] += max(cost - cpu, 0.1 * cost) / 1e3
            web_cpu[t] += cpu / 1e3
            n_audit = AUDIT_PER_REQUEST if j == 0 else 1
            audit_n[shard, t] += n_audit
            audit_hold[shard, t] += (n_audit * au["hold_a_ms"] + au["hold_b_ms"] * matched) / 1e3
            jobs[shard, t] += matched / CAMERAS_PER_OWNER
            # each job is later claimed (in a batch) and finished on the shard: measured per job, spread below
            job_db[shard, t] += matched / CAMERAS_PER_OWNER * cal["jobs"]["db_ms_per_job"] / 1e3
            items_i += matched
        items_per_req[i] = items_i
        total_items += items_i
        if len(touched) > 1:
            cross_items += items_i
        http[t] += 6  # the form, the match preview, the request, its page
        web_cpu[t] += 6 * http_cpu
        # the owners' answers: clips uploaded hours later, each charged to the shard of its camera
        n_clips = rng.binomial(int(round(items_i)), args.response_rate) if items_i >= 1 else 0
        if n_clips:
            delay = rng.lognormal(math.log(args.response_delay_h * 60.0), 0.8, n_clips)
            clip_minutes.append((t + delay).astype(np.int64))
            clip_agency.append(np.full(n_clips, day.req_agency[i]))
            w = per_shard_cams / per_shard_cams.sum() if per_shard_cams.sum() > 0 else np.ones(len(touched)) / len(touched)
            clip_shard.append(touched[rng.choice(len(touched), size=n_clips, p=w)])
    clips = 0
    late = 0
    if clip_minutes:
        cm = np.concatenate(clip_minutes)
        ca = np.concatenate(clip_agency)
        cs = np.concatenate(clip_shard)
        clips = len(cm)
        late = int((cm >= M).sum())  # answered after midnight: charged to the same minute of the next (alike) day
        cm %= M
        size = rng.lognormal(math.log(args.clip_mb), 0.5, clips)
        np.add.at(upload_mb, cm, size)
        np.add.at(bucket_mb, ca, size)
        chunks = np.ceil(size / CHUNK_MB) + 3  # the inbox, the answer, the upload session, then the chunks
        np.add.at(http, cm, chunks)
        np.add.at(web_cpu, cm, chunks * http_cpu + size / cal["ingest"]["mb_per_s_core"])
        np.add.at(audit_n, (cs, cm), AUDIT_PER_CLIP)
        np.add.at(audit_hold, (cs, cm), AUDIT_PER_CLIP * au["hold_a_ms"] / 1e3)
        np.add.at(parts["answers"], (cs, cm), AUDIT_PER_CLIP * au["hold_a_ms"] * 2 / 1e3)  # the evidence rows beside the events
    # map reads: charged to the shard of each viewport cell holding cameras (a viewport may cross a border)
    shift = np.int64(2 * (FINE - MAP_LEVEL))
    vshard = layout.shard_of(day.map_codes << shift)
    home = vshard[:, vshard.shape[1] // 2]
    crossing = (vshard != home[:, None]).any(axis=1)
    feats = np.minimum(day.map_cameras * CONSENT_MAP, 10_000)
    mcost = (mp["wall_a_ms"] + mp["wall_b_ms"] * feats) / 1e3
    mcpu = (mp["cpu_a_ms"] + mp["cpu_b_ms"] * feats) / 1e3
    np.add.at(parts["map reads"], (home, day.map_minute), np.maximum(mcost - mcpu, 0.1 * mcost) * np.where(crossing, 1.3, 1.0))
    np.add.at(web_cpu, day.map_minute, (mp["cpu_a_ms"] + mp["web_cpu_b_ms"] * feats) / 1e3 + http_cpu)
    np.add.at(http, day.map_minute, 1)
    np.add.at(audit_n, (home, day.map_minute), 1)
    np.add.at(audit_hold, (home, day.map_minute), (au["hold_a_ms"] + au["hold_b_ms"] * feats) / 1e3)
    if crossing.any():  # the other shard's part: one more event there
        other = np.where(vshard[:, 0] != home, vshard[:, 0], vshard[:, -1])
        np.add.at(audit_n, (other[crossing], day.map_minute[crossing]), 1)
        np.add.at(audit_hold, (other[crossing], day.map_minute[crossing]), au["hold_a_ms"] / 1e3)
    # notifications are drained by workers within --notify-sla-min: the load is the peak window's average
    win = args.notify_sla_min
    jobs_total = jobs.sum(axis=0)
    kernel = np.ones(win) / (win * 60.0)
    jobs_rate = np.convolve(np.concatenate([jobs_total, jobs_total[:win - 1]]), kernel, mode="valid")[:M]
    for i in range(s):  # workers spread each shard's claims and finishes over the same window
        parts["jobs"][i] = np.convolve(np.concatenate([job_db[i, -(win - 1):] if win > 1 else job_db[i, :0], job_db[i]]),
                             np.ones(win) / win, mode="valid")[:M]

    db = sum(parts.values())
    # live: concurrent sessions at the peak; edge devices connected all day
    live = args.live_sessions_per_agency * len(ag.kind)
    edge_devices = int(args.cameras * args.edge_share / args.cameras_per_edge_device)
    live_http = live / 1.0  # each viewer polls the playlist every second and fetches each 1 s segment
    live_mbps = live * args.live_mbit / 8.0  # MB/s relayed (edge -> process -> broker -> viewer's process)
    return {
        "db": db, "db_parts": parts, "audit_n": audit_n, "audit_hold": audit_hold, "jobs": jobs, "jobs_rate": jobs_rate,
        "web_cpu": web_cpu, "http": http, "upload_mb": upload_mb, "bucket_mb": bucket_mb, "clips": clips,
        "late_clips": late, "fanouts": fanouts, "items": total_items, "cross_items": cross_items,
        "items_per_req": items_per_req, "map_crossing": float(crossing.mean()) if len(crossing) else 0.0,
        "live": live, "live_http": live_http, "live_mbps": live_mbps, "edge_devices": edge_devices,
    }


def tiers(args: argparse.Namespace, cal: dict[str, Any], pop: Population, ag: Agencies, day: Day, layout: Layout,
          load: dict[str, Any]) -> dict[str, Any]:
    util = args.target_utilisation
    s = len(layout.starts)
    db_cap = cal["db_parallelism"]  # DB seconds per second one shard (this machine) delivers
    db_peak = load["db"].max(axis=1) / 60.0  # DB seconds per second in each shard's busiest minute
    db_ratio = db_peak / db_cap
    audit_peak = load["audit_n"].max(axis=1) / 60.0
    hold_peak = load["audit_hold"].max(axis=1) / 60.0  # fraction of each second the chain lock is held
    chain_cap = cal["audit"]["appends_per_s_0"]
    cams_per_shard = np.bincount(layout.shard_of(pop.code), minlength=s)
    hot = int(np.argmax(np.maximum(db_ratio, hold_peak)))
    hot_minute = int(np.argmax(load["db"][hot]))
    hot_parts = {k: float(v[hot, hot_minute] / 60.0 / db_cap) for k, v in load["db_parts"].items()}
    # agencies pinned to the shards their jurisdiction covers
    pins = np.zeros(len(ag.kind), dtype=np.int64)
    pinned = np.zeros(s, dtype=np.int64)  # agencies whose jurisdiction holds cameras on each shard
    for a, cells in enumerate(ag.cells):
        if len(cells):
            on = np.unique(layout.shard_of(cells << np.int64(2 * (FINE - COARSE))))
            pins[a] = len(on)
            pinned[on] += 1
    centre = np.array([c[len(c) // 2] for c in day.req_cells], dtype=np.int64) if day.req_cells else np.zeros(0, np.int64)
    req_home = np.bincount(layout.shard_of(centre), minlength=s) if len(centre) else np.zeros(s, dtype=np.int64)
    per_shard = [{"shard": i, "cameras": int(cams_per_shard[i]), "agencies": int(pinned[i]), "requests_day": int(req_home[i]),
                  "db_ratio": float(db_ratio[i]), "audit_per_s": float(audit_peak[i]), "chain_lock_busy": float(hold_peak[i]),
                  "jobs_day": float(load["jobs"][i].sum())} for i in range(s)]
    web_core_s = load["web_cpu"].max() / 60.0
    http_peak = load["http"].max() / 60.0 + load["live_http"]
    relay_cpu = load["live_mbps"] * 2 * cal["http"]["relay_cpu_ms_per_mb"] / 1e3  # in from the edge, out to viewers
    web_cores = (web_core_s + load["live_http"] * cal["http"]["cpu_per_request_ms"] / 1e3 + relay_cpu) / util
    ws_conns = int(load["edge_devices"] + load["live"])
    ws_per_process = args.ws_memory_mb * 1024.0 / cal["http"]["ws_kb_per_conn"]
    web_processes = max(2, math.ceil(web_cores), math.ceil(ws_conns / ws_per_process))
    jobs_peak = float(load["jobs_rate"].max())
    workers = max(2, math.ceil(jobs_peak / (cal["drain"]["jobs_per_s"] * util)))
    total_audit_peak = float(load["audit_n"].sum(axis=0).max() / 60.0)
    total_hold_peak = float(load["audit_hold"].sum(axis=0).max() / 60.0)
    day_mb = float(load["bucket_mb"].sum())
    db_shards_by_load = math.ceil(float((load["db"].sum(axis=0)).max() / 60.0) / (db_cap * util))
    return {
        "shards": s, "leaves": layout.leaves, "leaf_levels": layout.leaf_levels, "per_shard": per_shard,
        "cameras_per_shard": {"min": int(cams_per_shard.min()), "median": int(np.median(cams_per_shard)),
                              "max": int(cams_per_shard.max())},
        "requests": int(len(day.req_agency)), "items": float(load["items"]),
        "items_per_request_median": float(np.median(load["items_per_req"])) if len(day.req_agency) else 0.0,
        "items_per_request_p99": float(np.percentile(load["items_per_req"], 99)) if len(day.req_agency) else 0.0,
        "fences_one_shard": float((load["fanouts"] == 1).mean()) if len(day.req_agency) else 1.0,
        "fences_max_shards": int(load["fanouts"].max()) if len(day.req_agency) else 0,
        "cross_items_share": float(load["cross_items"] / max(load["items"], 1.0)),
        "map_reads": int(len(day.map_agency)), "map_crossing": load["map_crossing"],
        "agencies_one_shard": float((pins <= 1).mean()), "agencies_pins_max": int(pins.max()),
        "agencies_pins_p99": float(np.percentile(pins, 99)),
        "db_peak_ratio": db_ratio.tolist(), "db_peak_ratio_max": float(db_ratio.max()),
        "db_peak_ratio_median": float(np.median(db_ratio)), "db_shards_by_load": db_shards_by_load,
        "db_cores": float(db_peak.sum() / util),  # DB-seconds per second ~ busy cores
        "hot_shard": {"index": hot, "cameras": int(cams_per_shard[hot]), "db_ratio": float(db_ratio[hot]),
                      "db_parts": hot_parts, "peak_minute_utc": hot_minute,
                      "audit_per_s": float(audit_peak[hot]), "chain_lock_busy": float(hold_peak[hot])},
        "audit_peak_per_s_max": float(audit_peak.max()), "chain_lock_busy_max": float(hold_peak.max()),
        "audit_chain_capacity": chain_cap,
        "global_chain": {"appends_per_s": total_audit_peak, "lock_busy": total_hold_peak},
        "anchors_per_s": s / args.anchor_every_s,
        "web": {"http_per_s": http_peak, "cores": web_cores, "processes": web_processes,
                "ws_connections": ws_conns, "ws_per_process": ws_per_process,
                "upload_mb_per_s": float(load["upload_mb"].max() / 60.0)},
        "workers": {"jobs_per_s_peak": jobs_peak, "processes": workers,
                    "mail_per_s_peak": jobs_peak * (1 - args.webhook_share),
                    "webhooks_per_s_peak": jobs_peak * args.webhook_share,
                    "jobs_per_day": float(load["jobs"].sum())},
        "storage": {"clips_per_day": int(load["clips"]), "tb_per_day": day_mb / 1e6,
                    "tb_retained": day_mb / 1e6 * args.evidence_days,
                    "largest_bucket_gb_per_day": float(load["bucket_mb"].max() / 1e3),
                    "buckets_with_uploads": int((load["bucket_mb"] > 0).sum())},
        "live": {"sessions": load["live"], "edge_devices": load["edge_devices"], "relay_mb_per_s": load["live_mbps"],
                 "broker_msgs_per_s": load["live"] * 2 + load["edge_devices"] / 30.0},
    }


# --- calibration ----------------------------------------------------------------------------------------------


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x, with b >= 0 (more rows never cost less) and a >= 0."""
    x, y = np.array(xs, float), np.array(ys, float)
    if len(x) < 3 or np.ptp(x) == 0:
        return float(np.median(y)), 0.0
    b, a = np.polyfit(x, y, 1)
    if b < 0:
        return float(np.median(y)), 0.0
    if a < 0:
        return 0.0, float(np.median(y / np.maximum(x, 1)))
    return float(a), float(b)


async def calibrate_matching(p: Any, meta: dict[str, Any], fences: list[Any]) -> dict[str, Any]:
    import match_bench
    from consentcam.db.models import Agency
    from consentcam.services.requests import parse_area

    async with p.db.sessions() as session:
        agency = await session.get(Agency, meta["agency_id"])
    now = p.now()
    walls, cpus, rows = [], [], []
    for i, spec in enumerate(fences):
        fence = parse_area(spec.area)
        c0 = time.process_time()
        dt, matches = await match_bench.timed_match(p, agency, fence, spec, now)
        if i >= 4:  # warm-up not counted
            walls.append(dt * 1e3)
            cpus.append((time.process_time() - c0) * 1e3)
            rows.append(len(matches))
    wa, wb = _fit(rows, walls)
    ca, cb = _fit(rows, cpus)
    # saturation: 8 matches at a time for a few seconds; DB parallelism = throughput x DB time per match
    built = [(s, parse_area(s.area)) for s in fences]
    done = 0
    stop = time.perf_counter() + 4.0
    c0 = time.process_time()
    t0 = time.perf_counter()

    async def loop(k: int) -> None:
        nonlocal done
        j = k
        while time.perf_counter() < stop:
            spec, fence = built[j % len(built)]
            await match_bench.timed_match(p, agency, fence, spec, now)
            done += 1
            j += 8

    await asyncio.gather(*(loop(k) for k in range(8)))
    span = time.perf_counter() - t0
    client_cpu = (time.process_time() - c0) / max(done, 1) * 1e3
    sat = done / span
    db_ms = max(statistics.median(walls) - statistics.median(cpus), 0.1 * statistics.median(walls))
    return {"wall_a_ms": wa, "wall_b_ms": wb, "cpu_a_ms": ca, "cpu_b_ms": cb, "n": len(walls),
            "wall_median_ms": statistics.median(walls), "cpu_median_ms": statistics.median(cpus),
            "rows_median": statistics.median(rows), "rows_max": max(rows),
            "saturated_per_s": sat, "saturated_client_cpu_ms": client_cpu, "db_ms": db_ms,
            "db_busy_at_saturation": sat * db_ms / 1e3, "client_busy_at_saturation": sat * client_cpu / 1e3}


async def calibrate_fanout(p: Any, meta: dict[str, Any]) -> dict[str, Any]:
    import match_bench
    from consentcam.services.requests import create_request

    principal = await match_bench._principal(p, meta)
    await match_bench.reset_state(p, meta)
    c0, t0 = time.process_time(), time.perf_counter()
    request = await create_request(p, principal, match_bench._fanout_spec(1))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    items = int(request.matched)
    await match_bench.reset_state(p, meta)
    return {"items": items, "wall_s": wall, "cpu_s": cpu, "wall_per_item_ms": wall / items * 1e3,
            "cpu_per_item_ms": cpu / items * 1e3}


async def calibrate_map(p: Any, meta: dict[str, Any], seed: int) -> dict[str, Any]:
    import match_bench
    from consentcam.services.map import map_read

    principal = await match_bench._principal(p, meta)
    rng = np.random.default_rng(seed + 31)
    lats, lons = common._metro_points(rng, 30)
    walls, cpus, feats = [], [], []
    for i, (la, lo) in enumerate(zip(lats, lons, strict=True)):
        half = [250.0, 600.0, 1_200.0][i % 3]
        dlat, dlon = half / common.M_PER_DEG_LAT, half / common.M_PER_DEG_LON
        bbox = (float(lo - dlon), float(la - dlat), float(lo + dlon), float(la + dlat))
        c0, t0 = time.process_time(), time.perf_counter()
        out = await map_read(p, principal, bbox)
        if i >= 3:
            walls.append((time.perf_counter() - t0) * 1e3)
            cpus.append((time.process_time() - c0) * 1e3)
            feats.append(len(out["features"]))
    await match_bench.reset_state(p, meta)
    wa, wb = _fit(feats, walls)
    ca, cb = _fit(feats, cpus)
    return {"wall_a_ms": wa, "wall_b_ms": wb, "cpu_a_ms": ca, "cpu_b_ms": cb, "n": len(walls),
            "features_median": statistics.median(feats), "features_max": max(feats),
            "wall_median_ms": statistics.median(walls)}


async def calibrate_audit(p: Any, meta: dict[str, Any], seconds: float, n_ids: int, rounds: int = 3) -> dict[str, Any]:
    """Appends per second of ONE chain: 8 writers, each a transaction that takes the chain lock and appends, bare
    and naming ``n_ids`` cameras, in alternating rounds (a noisy moment hits both); medians of the rounds."""
    import match_bench
    from consentcam import audit
    from sqlalchemy import text

    async with p.db.sessions() as session:
        ids = list((await session.execute(text(f"SELECT id FROM cameras ORDER BY seq LIMIT {n_ids}"))).scalars())
    rates: dict[str, list[float]] = {"0": [], "n": []}
    for r in range(rounds):
        variants = [("0", []), ("n", ids)]
        for label, cams in variants if r % 2 == 0 else variants[::-1]:
            done = 0
            stop = time.perf_counter() + seconds / rounds
            t0 = time.perf_counter()

            async def writer(k: int, cams: list[str] = cams, stop: float = stop) -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    async with p.db.transaction() as session:
                        await audit.record(p.db, session, p.now(), audit.Actor.system("capacity"), "capacity.probe",
                                           subject_type="bench", subject_id=str(k), camera_ids=cams)
                    done += 1

            await asyncio.gather(*(writer(k) for k in range(8)))
            rates[label].append(done / (time.perf_counter() - t0))
    out: dict[str, Any] = {"n_ids": n_ids, "rounds": rates}
    out["appends_per_s_0"] = statistics.median(rates["0"])
    out["appends_per_s_n"] = statistics.median(rates["n"])
    check = await audit.verify_chain(p.db)
    out["chain_verifies"] = check.ok
    await match_bench.reset_state(p, meta)
    out["hold_a_ms"] = 1e3 / out["appends_per_s_0"]
    out["hold_b_ms"] = max(0.0, (1e3 / out["appends_per_s_n"] - out["hold_a_ms"]) / n_ids)
    return out


async def calibrate_jobs(p: Any, meta: dict[str, Any], n: int = 400) -> dict[str, Any]:
    """What the outbox itself costs per job, without the delivery: ``n`` jobs of a no-op kind enqueued with
    ``enqueue_many``, then claimed in batches of 20 and finished one by one by a ``Worker`` (one at a time)."""
    import match_bench
    from consentcam import jobs

    @jobs.job_handler("capacity.noop")
    async def noop(p: Any, job: Any) -> dict[str, Any]:
        return {}

    await match_bench.reset_state(p, meta)
    c0, t0 = time.process_time(), time.perf_counter()
    async with p.db.transaction() as session:
        await jobs.enqueue_many(session, p.now(), "capacity.noop", (({"i": i}, f"capacity:{i}") for i in range(n)))
    enqueue_wall, enqueue_cpu = time.perf_counter() - t0, time.process_time() - c0
    worker = jobs.Worker(p, "capacity-noop", batch=20, concurrency=1, kinds=("capacity.noop",))
    done = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while (k := await worker.run_once()) > 0:
        done += k
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    jobs.HANDLERS.pop("capacity.noop", None)
    await match_bench.reset_state(p, meta)
    return {"jobs": done, "enqueue_us_per_job": enqueue_wall / n * 1e6, "claim_finish_ms_per_job": wall / max(done, 1) * 1e3,
            "cpu_ms_per_job": cpu / max(done, 1) * 1e3, "db_ms_per_job": max(wall - cpu, 0.1 * wall) / max(done, 1) * 1e3,
            "enqueue_cpu_us_per_job": enqueue_cpu / n * 1e6}


async def calibrate_drain(p: Any, meta: dict[str, Any], jobs: int) -> dict[str, Any]:
    import match_bench

    with match_bench.SmtpPeer() as peer:
        c0 = time.process_time()
        out = await match_bench.bench_drain(p, meta, (peer.host, peer.port), jobs)
        cpu = time.process_time() - c0
    # bench_drain also made the 10,000-camera request the jobs come from: charge its CPU to that, not the jobs
    out["cpu_per_job_ms"] = cpu / max(out["jobs"], 1) * 1e3
    return out


HTTP_CHILD = r"""
import asyncio, os, sys
from aiohttp import web
async def ping(request):
    return web.json_response({"ok": True})
async def ws(request):
    w = web.WebSocketResponse(heartbeat=30.0)
    await w.prepare(request)
    async for msg in w:
        pass
    return w
app = web.Application(client_max_size=32 << 20)
app.add_routes([web.get("/ping", ping), web.get("/ws", ws)])
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
asyncio.run(main())
"""


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_kb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return 0.0


async def calibrate_http() -> dict[str, Any]:
    """A bare aiohttp server in its own process: CPU per small JSON request, memory per idle WebSocket, CPU per MB
    received over WebSockets (what an edge relay's segments cost the process that terminates it)."""
    import aiohttp

    proc = subprocess.Popen([sys.executable, "-u", "-c", HTTP_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        out: dict[str, Any] = {}
        # no connector limit: each WebSocket holds its connection for as long as it is open
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            n = 3000
            sem = asyncio.Semaphore(20)

            async def get() -> None:
                async with sem, http.get(f"{base}/ping") as r:
                    await r.read()

            await asyncio.gather(*(get() for _ in range(200)))
            c0 = _proc_cpu(proc.pid)
            await asyncio.gather(*(get() for _ in range(n)))
            out["cpu_per_request_ms"] = (_proc_cpu(proc.pid) - c0) / n * 1e3
            rss0 = _proc_rss_kb(proc.pid)
            conns = 1000
            sockets = [await http.ws_connect(f"{base}/ws") for _ in range(conns)]
            await asyncio.sleep(0.5)
            out["ws_kb_per_conn"] = max(1.0, (_proc_rss_kb(proc.pid) - rss0) / conns)
            chunk = os.urandom(256 * 1024)
            mb = 0.0
            c0 = _proc_cpu(proc.pid)
            for _ in range(40):
                await asyncio.gather(*(s.send_bytes(chunk) for s in sockets[:10]))
                mb += 10 * len(chunk) / 1e6
            await asyncio.gather(*(s.close() for s in sockets))
            await asyncio.sleep(0.3)
            out["relay_cpu_ms_per_mb"] = (_proc_cpu(proc.pid) - c0) / mb * 1e3
            out["ws_connections_probed"] = conns
        return out
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def calibrate_app(p: Any, url: str, meta: dict[str, Any], requests: int = 600) -> dict[str, Any]:
    """The real ``consentcam serve`` on the calibration shard, in its own process: server CPU per authenticated
    API call (``GET /api/v1/me``: token lookup in the database, the operation registry, JSON) and per map read
    through HTTP (``GET /api/v1/map/cameras`` over a 1.2 km viewport, GeoJSON and its audit event included)."""
    import socket
    from datetime import timedelta

    import aiohttp
    import match_bench
    from consentcam.db.models import AuthToken
    from consentcam.security import digest, new_secret

    secret = new_secret("cc_")
    real_now = datetime.now(UTC)
    async with p.db.transaction() as session:  # a bench-only session token for the cached investigator
        session.add(AuthToken(token_hash=digest(secret), user_id=meta["investigator_id"], kind="bearer",
                              created_at=real_now, expires_at=real_now + timedelta(hours=1)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, CONSENTCAM_DATABASE_URL=url, CONSENTCAM_SECRET_KEY=common.BENCH_SECRET,
               CONSENTCAM_DATA_DIR=str(common.CACHE_DIR / "data"), CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS="false",
               CONSENTCAM_RUN_JOBS_IN_PROCESS="false", CONSENTCAM_PUBLIC_URL=f"http://127.0.0.1:{port}")
    exe = str(Path(sys.executable).parent / "consentcam")
    proc = subprocess.Popen([exe, "serve", "--no-migrate", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as http:
            deadline = time.perf_counter() + 90
            while True:
                try:
                    async with http.get(f"{base}/api/v1/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"consentcam serve did not start: {proc.stderr.read() if proc.stderr else ''}")
                await asyncio.sleep(0.3)
            lat, lon = common.CENTRE_LAT, common.CENTRE_LON
            dlat, dlon = 1_200 / common.M_PER_DEG_LAT, 1_200 / common.M_PER_DEG_LON
            bbox = f"{lon - dlon},{lat - dlat},{lon + dlon},{lat + dlat}"
            for name, path, n in (("me", "/api/v1/me", requests), ("map", f"/api/v1/map/cameras?bbox={bbox}", requests // 6)):
                sem = asyncio.Semaphore(10)
                statuses: dict[int, int] = {}
                features: list[int] = []

                async def get(path: str = path, sem: asyncio.Semaphore = sem, statuses: dict[int, int] = statuses,
                              features: list[int] = features) -> None:
                    async with sem, http.get(base + path) as r:
                        body = await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        if r.status == 200 and b'"features"' in body:
                            features.append(len(json.loads(body)["features"]))

                await asyncio.gather(*(get() for _ in range(20)))
                statuses.clear()
                c0, t0 = _proc_cpu(proc.pid), time.perf_counter()
                await asyncio.gather(*(get() for _ in range(n)))
                cpu, wall = _proc_cpu(proc.pid) - c0, time.perf_counter() - t0
                if set(statuses) != {200}:
                    raise RuntimeError(f"GET {path}: statuses {statuses}")
                out[f"{name}_cpu_ms"] = cpu / n * 1e3
                out[f"{name}_per_s"] = n / wall
                if features:
                    out["map_features"] = statistics.median(features)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        await match_bench.reset_state(p, meta)
    return out


def calibrate_ingest(mb: int = 96) -> dict[str, Any]:
    """What receiving an upload costs at least: SHA-256 over it and writing it to a file, per core."""
    import hashlib

    chunk = os.urandom(1 << 20)
    c0 = time.process_time()
    with tempfile.NamedTemporaryFile(dir=common.CACHE_DIR) as f:
        h = hashlib.sha256()
        for _ in range(mb):
            h.update(chunk)
            f.write(chunk)
        f.flush()
    cpu = time.process_time() - c0
    return {"mb_per_s_core": mb / max(cpu, 1e-3), "mb": mb}


async def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    import match_bench

    common.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    fences = common.make_fences(args.shard_seed, args.calibration_fences // 2 + 2)
    out: dict[str, Any] = {"shard_cameras": args.shard_cameras}
    for backend in ("sqlite", "postgresql"):
        log(f"calibration: {backend} shard of {args.shard_cameras:,} cameras (built once, then cached)")
        build = match_bench.build_sqlite if backend == "sqlite" else match_bench.build_postgres
        url, meta = await build(args.shard_cameras, args.shard_seed, False)
        p = await match_bench._open(url)
        try:
            await match_bench.reset_state(p, meta)
            part: dict[str, Any] = {"match": await calibrate_matching(p, meta, fences)}
            log(f"calibration: {backend} match {part['match']['wall_median_ms']:.1f} ms median "
                f"({part['match']['rows_median']:.0f} cameras), saturated {part['match']['saturated_per_s']:.0f}/s")
            if backend == "postgresql":
                part["fanout"] = await calibrate_fanout(p, meta)
                log(f"calibration: fan-out {part['fanout']['items']:,} items in {part['fanout']['wall_s']:.2f} s")
                part["map"] = await calibrate_map(p, meta, args.shard_seed)
                log(f"calibration: map read {part['map']['wall_median_ms']:.1f} ms median")
                part["audit"] = await calibrate_audit(p, meta, args.audit_seconds, 500)
                log(f"calibration: audit chain {part['audit']['appends_per_s_0']:.0f} appends/s "
                    f"({part['audit']['appends_per_s_n']:.0f}/s naming 500 cameras)")
                part["jobs"] = await calibrate_jobs(p, meta)
                log(f"calibration: outbox {part['jobs']['claim_finish_ms_per_job']:.2f} ms per job claimed and finished "
                    f"({part['jobs']['db_ms_per_job']:.2f} ms of it in the database)")
                part["drain"] = await calibrate_drain(p, meta, args.drain_jobs)
                log(f"calibration: outbox worker {part['drain']['jobs_per_s']:.0f} mail jobs/s")
                part["app"] = await calibrate_app(p, url, meta)
                log(f"calibration: consentcam serve {part['app']['me_cpu_ms']:.2f} ms CPU per API call, "
                    f"{part['app']['map_cpu_ms']:.1f} ms per map read ({part['app'].get('map_features', 0):.0f} features)")
        finally:
            await p.db.dispose()
        out[backend] = part
    out["http"] = await calibrate_http()
    log(f"calibration: aiohttp {out['http']['cpu_per_request_ms']:.2f} ms CPU/request, "
        f"{out['http']['ws_kb_per_conn']:.0f} KB per idle WebSocket")
    out["ingest"] = calibrate_ingest()
    return out


def costs_from(cal: dict[str, Any] | None) -> dict[str, Any]:
    if cal is None:
        return dict(REFERENCE, source="reference (--no-calibrate)")
    pg = cal["postgresql"]
    m, f, mp, a, d = pg["match"], pg["fanout"], pg["map"], pg["audit"], pg["drain"]
    return {
        "source": "measured in this run",
        "match": {k: m[k] for k in ("wall_a_ms", "wall_b_ms", "cpu_a_ms", "cpu_b_ms")},
        "fanout": {"wall_per_item_ms": f["wall_per_item_ms"], "cpu_per_item_ms": f["cpu_per_item_ms"]},
        "map": dict({k: mp[k] for k in ("wall_a_ms", "wall_b_ms", "cpu_a_ms", "cpu_b_ms")},
                    # through HTTP each feature also costs its GeoJSON and the response model: from the real app
                    web_cpu_b_ms=max(mp["cpu_b_ms"], (pg["app"]["map_cpu_ms"] - pg["app"]["me_cpu_ms"] - mp["cpu_a_ms"])
                                     / max(pg["app"].get("map_features", 1), 1))),
        "audit": a, "drain": {"jobs_per_s": d["jobs_per_s"], "cpu_per_job_ms": d["cpu_per_job_ms"]},
        "jobs": {"db_ms_per_job": pg["jobs"]["db_ms_per_job"]},
        "http": dict(cal["http"], cpu_per_request_ms=pg["app"]["me_cpu_ms"], bare_cpu_per_request_ms=cal["http"]["cpu_per_request_ms"]),
        "ingest": cal["ingest"], "db_parallelism": float(os.cpu_count() or 2),
    }


# --- the run ---------------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, cal: dict[str, Any] | None, costs: dict[str, Any], t: dict[str, Any],
           wall: dict[str, float]) -> list[str]:
    lines: list[str] = []
    w = lines.append
    w("")
    w(f"ConsentCam capacity model: {args.scope}, {args.cameras:,} cameras, {args.agencies:,} agencies, "
      f"{args.width_km:.0f} x {args.height_km:.0f} km, {args.metros} metros, seed {args.seed}")
    w(f"load average at start {args.loadavg_start}; costs: {costs['source']}")
    if cal is not None:
        sq, pg = cal["sqlite"]["match"], cal["postgresql"]["match"]
        w("")
        w(f"== calibration: one shard of {cal['shard_cameras']:,} cameras on this machine ({os.cpu_count()} cores) ==")
        for name, m in (("sqlite", sq), ("postgresql", pg)):
            w(f"  match_cameras {name:<10} {m['wall_median_ms']:7.2f} ms median wall, {m['cpu_median_ms']:.2f} ms app CPU, "
              f"{m['rows_median']:.0f} cameras median (max {m['rows_max']}); fit {m['wall_a_ms']:.2f} + "
              f"{m['wall_b_ms'] * 1000:.1f} us/camera; saturated (8 at a time) {m['saturated_per_s']:.0f}/s")
        f, mp, a, d = cal["postgresql"]["fanout"], cal["postgresql"]["map"], cal["postgresql"]["audit"], cal["postgresql"]["drain"]
        w(f"  create_request fan-out      {f['items']:,} items in {f['wall_s']:.2f} s = {f['wall_per_item_ms'] * 1000:.0f} us/item "
          f"wall, {f['cpu_per_item_ms'] * 1000:.0f} us/item app CPU")
        w(f"  map_read                    {mp['wall_median_ms']:7.2f} ms median ({mp['features_median']:.0f} features); fit "
          f"{mp['wall_a_ms']:.2f} + {mp['wall_b_ms'] * 1000:.1f} us/feature")
        w(f"  audit chain (8 writers)     {a['appends_per_s_0']:7.0f} appends/s bare, {a['appends_per_s_n']:.0f}/s naming "
          f"{a['n_ids']} cameras; lock held {a['hold_a_ms']:.2f} ms + {a['hold_b_ms'] * 1000:.1f} us/camera; chain verifies: "
          f"{a['chain_verifies']}")
        jb = cal["postgresql"]["jobs"]
        w(f"  outbox, no delivery         {jb['claim_finish_ms_per_job']:7.2f} ms per job claimed (batches of 20) and finished, "
          f"{jb['db_ms_per_job']:.2f} ms of it in the database; enqueue_many {jb['enqueue_us_per_job']:.0f} us/job")
        w(f"  outbox worker               {d['jobs_per_s']:7.1f} notify.request jobs/s (mail to a local SMTP server, "
          f"{d.get('concurrency', 1)} at a time), {d['cpu_per_job_ms']:.1f} ms CPU/job")
        h = cal["http"]
        w(f"  aiohttp (bare)              {h['cpu_per_request_ms']:.2f} ms CPU/request, {h['ws_kb_per_conn']:.0f} KB/idle "
          f"WebSocket, {h['relay_cpu_ms_per_mb']:.1f} ms CPU per MB received")
        ap_ = cal["postgresql"]["app"]
        w(f"  consentcam serve (real app) {ap_['me_cpu_ms']:.2f} ms server CPU per authenticated GET /api/v1/me "
          f"({ap_['me_per_s']:.0f}/s at 10 clients), {ap_['map_cpu_ms']:.1f} ms per GET /api/v1/map/cameras "
          f"({ap_.get('map_features', 0):.0f} features)")
        w(f"  ingest proxy (sha256+write) {cal['ingest']['mb_per_s_core']:.0f} MB/s per core")
        w(f"  one shard's DB capacity     {costs['db_parallelism']:.0f} DB-seconds per second (its cores); at saturation the "
          f"matches kept the DB {pg['db_busy_at_saturation']:.2f} s/s and this one client process "
          f"{pg['client_busy_at_saturation']:.2f} s/s busy")
    w("")
    w(f"== simulation: one day (built in {wall['sim']:.1f} s) ==")
    w(f"  requests {t['requests']:,}/day; items {t['items']:,.0f} (median {t['items_per_request_median']:.0f}, p99 "
      f"{t['items_per_request_p99']:.0f} per request); map reads {t['map_reads']:,}/day; clips {t['storage']['clips_per_day']:,}/day")
    w(f"  layout: {t['shards']} shards from {t['leaves']} quadtree cells (levels {t['leaf_levels']}); cameras per shard "
      f"min {t['cameras_per_shard']['min']:,} / median {t['cameras_per_shard']['median']:,} / max {t['cameras_per_shard']['max']:,}")
    w(f"  fences on one shard {t['fences_one_shard'] * 100:.2f}% (max {t['fences_max_shards']} shards); items in "
      f"cross-shard requests {t['cross_items_share'] * 100:.2f}%; map viewports crossing a border {t['map_crossing'] * 100:.1f}%")
    w(f"  agencies pinned to one shard {t['agencies_one_shard'] * 100:.1f}% (p99 {t['agencies_pins_p99']:.0f}, max "
      f"{t['agencies_pins_max']} shards: the {'national' if args.scope == 'nation' else 'state'} police)")
    w("")
    rows = sorted(t["per_shard"], key=lambda r: -max(r["db_ratio"], r["chain_lock_busy"]))[:args.show_shards]
    w(f"== per shard, peak minute ({'all' if len(rows) == t['shards'] else 'the hottest ' + str(len(rows)) + ' of ' + str(t['shards'])}) ==")
    w(f"  {'shard':>5} {'cameras':>10} {'agencies':>8} {'requests/d':>10} {'jobs/d':>10} {'DB load/one shard':>18} "
      f"{'audit/s':>8} {'chain lock busy':>15}")
    for r in sorted(rows, key=lambda r: r["shard"]):
        w(f"  {r['shard']:>5} {r['cameras']:>10,} {r['agencies']:>8,} {r['requests_day']:>10,} {r['jobs_day']:>10,.0f} "
          f"{r['db_ratio']:>18.3f} {r['audit_per_s']:>8.1f} {r['chain_lock_busy'] * 100:>14.1f}%")
    w("")
    w("== peak minute vs the calibrated single-shard capacity ==")
    h = t["hot_shard"]
    w(f"  database shards   peak load / one shard: median {t['db_peak_ratio_median']:.3f}, hottest {t['db_peak_ratio_max']:.3f} "
      f"(shard {h['index']}, {h['cameras']:,} cameras); shards needed by load alone at {args.target_utilisation:.0%}: "
      f"{t['db_shards_by_load']}")
    w(f"                    the hottest shard's peak minute ({h['peak_minute_utc'] // 60:02d}:{h['peak_minute_utc'] % 60:02d} UTC) "
      "by cause: " + ", ".join(f"{k} {v:.3f}" for k, v in h["db_parts"].items()))
    w(f"  audit chains      hottest chain's lock busy {t['chain_lock_busy_max'] * 100:.1f}% of the peak minute (1.0 = one "
      f"chain's capacity); most appends on a shard {t['audit_peak_per_s_max']:.1f}/s vs {t['audit_chain_capacity']:.0f}/s bare")
    g = t["global_chain"]
    w(f"  one global chain  {g['appends_per_s']:.1f} appends/s at the peak = {g['appends_per_s'] / t['audit_chain_capacity']:.2f}x "
      f"one chain's capacity; lock busy {g['lock_busy'] * 100:.0f}% of every second; anchors into the global chain "
      f"{t['anchors_per_s']:.2f}/s")
    wb = t["web"]
    w(f"  web tier          {wb['http_per_s']:.0f} HTTP req/s, {wb['upload_mb_per_s']:.1f} MB/s uploads, {wb['cores']:.1f} cores "
      f"-> {wb['processes']} processes; {wb['ws_connections']:,} WebSockets ({wb['ws_per_process']:,.0f} per process "
      f"in {args.ws_memory_mb} MB)")
    wk = t["workers"]
    w(f"  workers           {wk['jobs_per_s_peak']:.1f} jobs/s (drained within {args.notify_sla_min} min) -> "
      f"{wk['processes']} processes; mail {wk['mail_per_s_peak']:.1f}/s, webhooks {wk['webhooks_per_s_peak']:.1f}/s; "
      f"{wk['jobs_per_day']:,.0f} jobs/day")
    st = t["storage"]
    w(f"  object storage    {st['tb_per_day']:.2f} TB/day in {st['buckets_with_uploads']:,} agency buckets (largest "
      f"{st['largest_bucket_gb_per_day']:.0f} GB/day); {st['tb_retained']:.0f} TB held at {args.evidence_days} days")
    lv = t["live"]
    w(f"  edge and live     {lv['edge_devices']:,} edge relays connected, {lv['sessions']:.0f} live sessions = "
      f"{lv['relay_mb_per_s']:.1f} MB/s through the broker, ~{lv['broker_msgs_per_s']:.0f} broker msgs/s")
    w("")
    w(f"wall time {wall['total']:.0f} s (calibration {wall['calibration']:.0f} s); load average at end "
      f"{[round(x, 2) for x in os.getloadavg()]}; JSON: {args.json}")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scope", choices=sorted(SCOPES), default="nation")
    ap.add_argument("--cameras", type=int, help="cameras in the deployment (state 500,000; nation 10,000,000)")
    ap.add_argument("--agencies", type=int, help="agencies (state 400; nation 18,000)")
    ap.add_argument("--metros", type=int, help="metro areas (Zipf sizes)")
    ap.add_argument("--width-km", type=float)
    ap.add_argument("--height-km", type=float)
    ap.add_argument("--rural-share", type=float, help="cameras spread uniformly outside metros")
    ap.add_argument("--requests-per-agency-day", type=float, default=1.0)
    ap.add_argument("--fence-radius-min", type=float, default=100.0)
    ap.add_argument("--fence-radius-max", type=float, default=500.0)
    ap.add_argument("--circle-share", type=float, default=0.6, help="circles; the rest polygons up to --fence-km2")
    ap.add_argument("--fence-km2", type=float, default=2.0)
    ap.add_argument("--response-rate", type=float, default=0.1, help="items answered with a clip")
    ap.add_argument("--response-delay-h", type=float, default=3.0, help="median delay of an answer")
    ap.add_argument("--clip-mb", type=float, default=50.0, help="median clip size")
    ap.add_argument("--evidence-days", type=int, default=365, help="how long evidence is kept")
    ap.add_argument("--map-reads-per-agency-day", type=float, default=40.0)
    ap.add_argument("--map-viewport-km", type=float, default=2.0)
    ap.add_argument("--live-sessions-per-agency", type=float, default=0.05, help="concurrent at the peak")
    ap.add_argument("--live-mbit", type=float, default=2.0)
    ap.add_argument("--edge-share", type=float, default=0.03, help="cameras behind an edge relay")
    ap.add_argument("--cameras-per-edge-device", type=float, default=4.0)
    ap.add_argument("--webhook-share", type=float, default=0.1, help="notifications by webhook instead of mail")
    ap.add_argument("--notify-sla-min", type=int, default=5, help="notifications out within this many minutes")
    ap.add_argument("--shard-max-cameras", type=int, default=500_000)
    ap.add_argument("--shard-max-requests-day", type=int, default=20_000)
    ap.add_argument("--anchor-every-s", type=float, default=60.0)
    ap.add_argument("--target-utilisation", type=float, default=0.5)
    ap.add_argument("--ws-memory-mb", type=int, default=1024, help="memory a web process gives idle WebSockets")
    ap.add_argument("--show-shards", type=int, default=25, help="per-shard rows printed (the hottest)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-calibrate", action="store_true", help="use REFERENCE costs; no database needed")
    ap.add_argument("--shard-cameras", type=int, default=100_000, help="cameras of the calibration shard")
    ap.add_argument("--shard-seed", type=int, default=1, help="seed of the calibration shard (shares match_bench's cache)")
    ap.add_argument("--calibration-fences", type=int, default=60)
    ap.add_argument("--audit-seconds", type=float, default=3.0)
    ap.add_argument("--drain-jobs", type=int, default=120)
    args = ap.parse_args(argv)
    scope = SCOPES[args.scope]
    for key in ("cameras", "agencies", "metros", "width_km", "height_km", "rural_share"):
        if getattr(args, key) is None:
            setattr(args, key, scope[key])
    args.centre = scope["centre"]
    if args.cameras < 1000 or args.agencies < 2:
        ap.error("at least 1,000 cameras and 2 agencies")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.loadavg_start = [round(x, 2) for x in os.getloadavg()]
    started = datetime.now(UTC)
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    args.json = str(common.RESULTS_DIR / f"capacity-{args.scope}-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    wall: dict[str, float] = {}
    cal = None
    t0 = time.perf_counter()
    if not args.no_calibrate:
        cal = asyncio.run(calibrate(args))
    wall["calibration"] = time.perf_counter() - t0
    costs = costs_from(cal)
    t1 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    log(f"simulation: {args.cameras:,} cameras over {args.metros} metros")
    pop = make_population(args, rng)
    ag = make_agencies(args, pop, rng)
    log(f"simulation: {len(ag.kind):,} agencies; one day of requests and map reads")
    day = simulate_day(args, pop, ag, rng)
    layout = plan_shards(args, pop, day)
    log(f"simulation: {len(layout.starts)} shards; charging the day minute by minute")
    load = charge(args, costs, pop, ag, day, layout, np.random.default_rng(args.seed + 1))
    t = tiers(args, costs, pop, ag, day, layout, load)
    wall["sim"] = time.perf_counter() - t1
    wall["total"] = time.perf_counter() - t0
    lines = report(args, cal, costs, t, wall)
    result = {"config": {k: v for k, v in vars(args).items() if k != "json"}, "started": started.isoformat(),
              "cpus": os.cpu_count(), "python": sys.version.split()[0], "machine": host.platform(),
              "calibration": cal, "costs": costs, "model": t, "wall_s": wall, "report": lines}
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
