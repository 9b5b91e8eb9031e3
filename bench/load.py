"""Load and faults on the city deployment (issue 11), one command each:

    .venv/bin/python bench/load.py                       # load: 60 s, 200 resumable uploads, 100 map reads/s, requests
    .venv/bin/python bench/load.py --faults              # the same while web processes and workers are SIGKILLed
    .venv/bin/python bench/load.py --restart-postgres    # PostgreSQL restarted mid-run: 503s, then recovery by itself
                                                         # (root; disrupts anything else using this PostgreSQL)

It brings up the deployment of docs/admins/scale.md on loopback (consentcam.testing.topology: nginx with TLS, two
web processes, two workers, PostgreSQL, S3 via moto, a real SMTP server), seeds owners and cameras through the API,
then runs for ``--seconds``:

- ``--uploads`` clients, each uploading distinct real MP4 clips through its own private link in ``--chunks``
  chunks, resuming from the server's offset after any failure (a dropped connection, a 502 while a process restarts);
- map reads at ``--map-rps`` per second (GeoJSON of the agency's cameras in a bounding box);
- one footage request per ``--request-every`` seconds, created by an investigator and approved by a supervisor,
  whose owner notifications go out by mail through the workers.

After the run it waits for the job queue to drain and checks what must hold: every notification job done (none
lost), mail delivered to every owner asked (duplicates counted: delivery is at least once), every stored clip
complete in S3 (no partial evidence), every upload the client saw acknowledged present in the vault, and the
audit chain verifying. Latency is reported as p50/p95/p99 per operation and, because these machines are shared and
noisy, as ratios against the same operations measured unloaded at the start of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import random
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CENTRE = (41.8800, -87.6300)
JURISDICTION = {"type": "Polygon", "coordinates": [[[-87.66, 41.86], [-87.60, 41.86], [-87.60, 41.90],
                                                    [-87.66, 41.90], [-87.66, 41.86]]]}
PASSWORD = "a long owner password"


# --- measurements --------------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    recovered: int = 0  # uploads that hit an error and finished by resuming
    started: float = field(default_factory=time.monotonic)
    timeline: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # 5 s: [ok, errors]

    def ok(self, op: str, seconds: float) -> None:
        self.latencies[op].append(seconds)
        self.timeline[int((time.monotonic() - self.started) // 5) * 5][0] += 1

    def error(self, op: str, what: str) -> None:
        self.errors[op][what] += 1
        if what != "client backlog":
            self.timeline[int((time.monotonic() - self.started) // 5) * 5][1] += 1

    def table(self, wall: float, baseline: dict[str, float] | None = None) -> dict[str, Any]:
        out = {}
        for op in sorted(set(self.latencies) | set(self.errors)):
            values = sorted(self.latencies.get(op, []))
            row: dict[str, Any] = {"ok": len(values), "errors": dict(self.errors.get(op, {})),
                                   "per_s": round(len(values) / wall, 1) if wall else 0.0}
            if values:
                q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
                row.update(p50_ms=round(q[49] * 1000, 1), p95_ms=round(q[94] * 1000, 1), p99_ms=round(q[98] * 1000, 1))
                if baseline and op in baseline and baseline[op] > 0:
                    row["p50_vs_unloaded"] = round(q[49] / baseline[op], 2)
            out[op] = row
        return out


def distinct_clip(base: bytes, tag: str) -> bytes:
    """The same real MP4 plus a top-level `free` box naming the upload: a valid file with its own SHA-256."""
    payload = tag.encode()
    return base + struct.pack(">I4s", 8 + len(payload), b"free") + payload


def make_base_clip(folder: Path, seconds: int) -> bytes:
    path = folder / "base.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=duration={seconds}:size=320x240:rate=15", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(path)], check=True, timeout=120)
    return path.read_bytes()


# --- the clients ----------------------------------------------------------------------------------------------


class Client:
    def __init__(self, http: aiohttp.ClientSession, stats: Stats) -> None:
        self.http = http
        self.stats = stats

    async def call(self, op: str, method: str, path: str, *, expect: tuple[int, ...], **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            async with self.http.request(method, path, **kwargs) as response:
                body = await response.read()
                if response.status not in expect:
                    self.stats.error(op, str(response.status))
                    return None
                self.stats.ok(op, time.perf_counter() - started)
                return json.loads(body) if body and response.content_type.endswith("json") else body
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.stats.error(op, type(exc).__name__)
            return None


async def login(http: aiohttp.ClientSession, email: str, password: str) -> dict[str, str]:
    async with http.post("/api/v1/auth/login", json={"email": email, "password": password}) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"login {email}: {response.status} {body}")
    return {"Authorization": f"Bearer {body['token']}"}


async def seed_owner(http: aiohttp.ClientSession, i: int, rng: random.Random) -> dict[str, Any]:
    email = f"owner{i}@load.example.org"
    for attempt in range(20):
        try:
            async with http.post("/api/v1/auth/owners", json={"email": email, "password": PASSWORD, "name": f"Owner {i}",
                                                              "notify": {"email": True}}) as r:
                if r.status not in (201, 409):
                    raise RuntimeError(f"register {email}: {r.status} {await r.text()}")
            headers = await login(http, email, PASSWORD)
            lat = CENTRE[0] + rng.uniform(-0.0012, 0.0012)
            lon = CENTRE[1] + rng.uniform(-0.0015, 0.0015)
            async with http.post("/api/v1/cameras", headers=headers, json={
                    "label": f"Camera {i}", "location": {"lat": lat, "lon": lon}, "retention_days": 30}) as r:
                camera = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"camera {email}: {r.status} {camera}")
            async with http.put(f"/api/v1/cameras/{camera['id']}/grants", headers=headers,
                                json={"map": True, "requests": True}) as r:
                if r.status != 200:
                    raise RuntimeError(f"grant {email}: {r.status} {await r.text()}")
            return {"email": email, "headers": headers, "camera_id": camera["id"]}
        except (TimeoutError, aiohttp.ClientError):
            await asyncio.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"could not seed {email}")


async def open_request(client: Client, investigator: dict[str, str], supervisor: dict[str, str], case: str,
                       centre: tuple[float, float], radius_m: float) -> str | None:
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    created = await client.call("request.create", "POST", "/api/v1/requests", expect=(201,), headers=investigator, json={
        "case_number": case, "description": "Load run: thefts from autos",
        "area": {"center": {"lat": centre[0], "lon": centre[1]}, "radius_m": radius_m},
        "window": {"start": (end - dt.timedelta(hours=1)).isoformat(), "end": end.isoformat()}})
    if not created:
        return None
    approved = await client.call("request.approve", "POST", f"/api/v1/requests/{created['id']}/approve",
                                 expect=(200,), headers=supervisor)
    return created["id"] if approved else None


async def uploader(client: Client, link: str, base: bytes, chunks: int, stop: asyncio.Event,
                   acknowledged: list[str], worker_id: int) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        data = distinct_clip(base, f"uploader {worker_id} clip {n}")
        total = len(data)
        digest = hashlib.sha256(data).hexdigest()
        size = -(-total // chunks)
        offset, failures = 0, 0
        clip_started = time.perf_counter()
        while True:  # until the server's 201 receipt: nothing else means the clip is in the vault
            if stop.is_set() and offset == 0:
                return
            end = min(offset + size, total) - 1
            # Every byte is there but no receipt came (the process died completing it): ask it to finish.
            piece, content_range = ((b"", f"bytes */{total}") if offset >= total
                                    else (data[offset:end + 1], f"bytes {offset}-{end}/{total}"))
            started = time.perf_counter()
            try:
                async with client.http.put(link, data=piece, headers={
                        "Content-Range": content_range, "Content-Type": "video/mp4"}) as r:
                    body = await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, body = None, str(exc).encode()
            if status == 201:
                client.stats.ok("upload.chunk", time.perf_counter() - started)
                receipt = json.loads(body)
                if receipt["sha256"] != digest:
                    client.stats.error("upload.clip", "wrong hash in receipt")
                acknowledged.append(receipt["sha256"])
                client.stats.recovered += failures > 0
                client.stats.ok("upload.clip", time.perf_counter() - clip_started)
                break
            if status == 202:
                client.stats.ok("upload.chunk", time.perf_counter() - started)
                # The server says how much it holds: resume there (a body cut short is stored up to the cut).
                received = json.loads(body)["received"]
                if offset < total and received != end + 1:
                    client.stats.error("upload.chunk", "stored short of the chunk")
                offset = received
                continue
            client.stats.error("upload.chunk", str(status) if status else "connection")
            failures += 1
            if failures > 50:
                client.stats.error("upload.clip", "gave up")
                break
            await asyncio.sleep(min(2.0, 0.1 * failures))
            # Ask the server where to resume: the part it stored survives any process's death.
            status_body = await client.call("upload.status", "GET", link, expect=(200,))
            if status_body is not None:
                if any(r["sha256"] == digest for r in status_body.get("receipts", [])):
                    acknowledged.append(digest)  # stored; only its 201 was lost with the process
                    client.stats.recovered += 1
                    client.stats.ok("upload.clip", time.perf_counter() - clip_started)
                    break
                offset = status_body["received"] if status_body.get("total") == total else 0



async def map_reader(client: Client, headers: dict[str, str], rps: float, stop: asyncio.Event) -> None:
    interval = 1.0 / rps
    pending: set[asyncio.Task[Any]] = set()
    next_at = time.perf_counter()
    rng = random.Random(7)
    while not stop.is_set():
        d = rng.uniform(0.001, 0.004)
        bbox = f"{CENTRE[1] - d},{CENTRE[0] - d},{CENTRE[1] + d},{CENTRE[0] + d}"
        if len(pending) < 200:  # open-loop, bounded: a slow server shows as latency and errors, not as fewer calls
            task = asyncio.ensure_future(client.call("map.read", "GET", "/api/v1/map/cameras", expect=(200,),
                                                     headers=headers, params={"bbox": bbox}))
            pending.add(task)
            task.add_done_callback(pending.discard)
        else:
            client.stats.error("map.read", "client backlog")
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    if pending:
        await asyncio.wait(pending, timeout=30)


async def faults(town: Any, every: float, stop: asyncio.Event, log: list[str], kill: bool) -> None:
    """SIGKILL a random web process or worker every ``every`` seconds on average, and restart it."""
    rng = random.Random(11)
    targets = [n for n in town.processes if n.startswith(("web", "worker"))]
    started = time.monotonic()
    while kill and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=rng.uniform(0.5 * every, 1.5 * every))
            return
        except TimeoutError:
            pass
        name = rng.choice(targets)
        log.append(f"{time.monotonic() - started:6.1f}s SIGKILL {name}")
        await asyncio.to_thread(town.restart, name)


async def restart_postgres(after: float, stop: asyncio.Event, log: list[str]) -> None:
    """Half way through, restart the machine's PostgreSQL (every connection dropped; the server gone ~1-2 s)."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(stop.wait(), timeout=after)
        return
    except TimeoutError:
        pass
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    log.append(f"{time.monotonic() - started:6.1f}s restart PostgreSQL {version}")
    await asyncio.to_thread(subprocess.run, ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                            check=True, timeout=120)
    log.append(f"{time.monotonic() - started:6.1f}s PostgreSQL is back")


# --- checks after the run ---------------------------------------------------------------------------------------


async def drain(database_url: str, timeout: float) -> dict[str, int]:
    import asyncpg

    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        while True:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
            counts = {r["status"]: r["n"] for r in rows}
            if not counts.get("pending") and not counts.get("running"):
                return counts
            if time.monotonic() > deadline:
                return counts
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def verify(town: Any, smtp_box: Any, acknowledged: list[str], auditor: dict[str, str]) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(town.database_url.replace("+asyncpg", ""))
    try:
        notify = await conn.fetch("SELECT status, count(*) AS n FROM jobs WHERE kind = 'notify.request' GROUP BY status")
        asked = await conn.fetch(
            "SELECT r.case_number, u.email FROM request_items i JOIN footage_requests r ON r.id = i.request_id "
            "JOIN cameras c ON c.id = i.camera_id JOIN users u ON u.id = c.owner_id WHERE r.status = 'open'")
        evidence = await conn.fetch("SELECT sha256, size FROM evidence")
    finally:
        await conn.close()
    objects = {key.rsplit("/", 1)[-1]: size for key, size in (await town.s3_objects()).items()}
    partial = [e["sha256"] for e in evidence if objects.get(e["sha256"]) != e["size"]]
    stored = {e["sha256"] for e in evidence}
    lost_uploads = [sha for sha in acknowledged if sha not in stored]

    deliveries: dict[tuple[str, str], int] = defaultdict(int)
    with smtp_box.lock:
        messages = list(smtp_box.messages)
    for message in messages:  # the request notices (receipts for uploaded clips are mail too, and not counted)
        subject = str(message["Subject"])
        found = re.search(r"asks about footage: case (LOAD-\d+)", subject)
        if found:
            deliveries[(found.group(1), str(message["To"]).strip())] += 1
    wanted = {(r["case_number"], r["email"]) for r in asked if r["case_number"].startswith("LOAD-")}
    missing_mail = sorted(w for w in wanted if not any(w[0] == c and w[1] in to for (c, to) in deliveries))
    duplicates = sum(n - 1 for n in deliveries.values() if n > 1)

    async with aiohttp.ClientSession(base_url=town.url, connector=aiohttp.TCPConnector(ssl=False)) as http:
        async with http.get("/api/v1/audit/verify", headers=auditor) as r:
            chain = await r.json()
    return {
        "notification_jobs": {r["status"]: r["n"] for r in notify},
        "owners_asked": len(wanted), "owners_not_mailed": len(missing_mail), "duplicate_mails": duplicates,
        "evidence_rows": len(evidence), "partial_evidence": len(partial), "acknowledged_uploads": len(acknowledged),
        "acknowledged_but_missing": len(lost_uploads), "audit_chain_ok": chain.get("ok"), "audit_events": chain.get("events"),
    }


# --- the run ------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, town: Any, smtp_box: Any, folder: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    jurisdiction = folder / "jurisdiction.geojson"
    jurisdiction.write_text(json.dumps(JURISDICTION))
    agency = town.cli("admin", "create-agency", "Load PD", "--jurisdiction", str(jurisdiction))["id"]
    passwords = {role: town.cli("admin", "create-user", f"{role}@loadpd.example.org", "--agency", agency, "--role", role)["password"]
                 for role in ("investigator", "supervisor", "auditor")}
    base = make_base_clip(folder, args.clip_seconds)
    stats, baseline_stats = Stats(), Stats()
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(ssl=False, limit=args.uploads + 300)
    async with aiohttp.ClientSession(base_url=town.url, connector=connector, timeout=timeout) as http:
        investigator = await login(http, "investigator@loadpd.example.org", passwords["investigator"])
        supervisor = await login(http, "supervisor@loadpd.example.org", passwords["supervisor"])
        auditor = await login(http, "auditor@loadpd.example.org", passwords["auditor"])

        print(f"seeding {args.uploads} owners and cameras through the API ...", file=sys.stderr)
        t0 = time.perf_counter()
        owners: list[dict[str, Any]] = []
        semaphore = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with semaphore:
                owners.append(await seed_owner(http, i, rng))

        await asyncio.gather(*(one(i) for i in range(args.uploads)))
        seeding_s = time.perf_counter() - t0
        seed_client = Client(http, Stats())
        first = await open_request(seed_client, investigator, supervisor, "LOAD-0", CENTRE, 400)
        if first is None:
            raise RuntimeError(f"the first request failed: {dict(seed_client.stats.errors)}")
        links: list[str] = []
        for owner in owners:
            async with http.get("/api/v1/inbox", headers=owner["headers"]) as r:
                inbox = await r.json()
            item = next(i for i in inbox["items"] if i["case_number"] == "LOAD-0")
            links.append(item["upload_url"][len(town.url):])

        # Unloaded baseline, same run: each operation alone, sequentially.
        base_client = Client(http, baseline_stats)
        for _ in range(30):
            await base_client.call("map.read", "GET", "/api/v1/map/cameras", expect=(200,), headers=investigator,
                                   params={"bbox": f"{CENTRE[1] - 0.003},{CENTRE[0] - 0.003},{CENTRE[1] + 0.003},{CENTRE[0] + 0.003}"})
        for _ in range(3):
            await open_request(base_client, investigator, supervisor, f"BASE-{_}", CENTRE, 30)
        baseline_ack: list[str] = []
        once = asyncio.Event()
        task = asyncio.ensure_future(uploader(base_client, links[0], base, args.chunks, once, baseline_ack, -1))
        while not baseline_ack:
            await asyncio.sleep(0.05)
        once.set()
        await task
        baseline = {op: statistics.median(v) for op, v in baseline_stats.latencies.items() if v}

        print(f"load for {args.seconds} s: {args.uploads} uploaders, {args.map_rps} map reads/s, a request every "
              f"{args.request_every} s{', with faults' if args.faults else ''} ...", file=sys.stderr)
        client = Client(http, stats)
        stats.started = time.monotonic()
        stop = asyncio.Event()
        acknowledged: list[str] = list(baseline_ack)
        fault_log: list[str] = []
        tasks = [asyncio.ensure_future(uploader(client, link, base, args.chunks, stop, acknowledged, i))
                 for i, link in enumerate(links)]
        tasks.append(asyncio.ensure_future(map_reader(client, investigator, args.map_rps, stop)))

        async def requester() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                centre = (CENTRE[0] + rng.uniform(-0.001, 0.001), CENTRE[1] + rng.uniform(-0.001, 0.001))
                await open_request(client, investigator, supervisor, f"LOAD-{n}", centre, 60)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=args.request_every)
                except TimeoutError:
                    pass

        tasks.append(asyncio.ensure_future(requester()))
        if args.faults:
            tasks.append(asyncio.ensure_future(faults(town, args.fault_every, stop, fault_log, kill=True)))
        if args.restart_postgres:
            tasks.append(asyncio.ensure_future(restart_postgres(args.seconds / 2, stop, fault_log)))
        started = time.perf_counter()
        await asyncio.sleep(args.seconds)
        stop.set()
        wall = time.perf_counter() - started
        await asyncio.wait(tasks, timeout=180)
        for proc in town.processes.values():  # every killed process is back before the checks
            if proc.popen is None or proc.popen.poll() is not None:
                town.restart(proc.name)

        print("waiting for the job queue to drain ...", file=sys.stderr)
        jobs = await drain(town.database_url, args.drain_timeout)
        await asyncio.sleep(2.0)  # the last mails reach the SMTP server
        checks = await verify(town, smtp_box, acknowledged, auditor)
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "seeding_s": round(seeding_s, 1), "wall_s": round(wall, 1), "operations": stats.table(wall, baseline),
        "unloaded_p50_ms": {op: round(v * 1000, 1) for op, v in baseline.items()},
        "uploads_recovered_after_errors": stats.recovered, "faults": fault_log,
        "every_5s_ok_and_errors": {t: v for t, v in sorted(stats.timeline.items())},
        "restarts": {n: p.restarts for n, p in town.processes.items()}, "jobs_after_drain": jobs, "checks": checks,
    }


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout|Exit|Unavailable)\b\S*( |$)")


def server_errors(folder: Path) -> dict[str, int]:
    """What the web processes logged as unhandled (each a 500): the request and the exception's last line."""
    found: dict[str, int] = defaultdict(int)
    for log in sorted(folder.glob("web*.log")):
        lines = log.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if "unhandled error on" not in line:
                continue
            request = line.split("unhandled error on", 1)[1].strip()
            request = re.sub(r"/[0-9a-f-]{20,}|/up_[0-9a-f]+", "/{id}", request)
            # The exception lines of the traceback (chained ones too), up to the next log record; the last is raised.
            chain = []
            for j in range(i + 1, min(i + 400, len(lines))):
                if "unhandled error on" in lines[j]:
                    break
                if EXCEPTION_LINE.match(lines[j]):
                    chain.append(lines[j][:160])
            found[f"{request}: {chain[-1] if chain else '?'}"] += 1
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--uploads", type=int, default=200, help="concurrent resumable uploaders (one owner each)")
    parser.add_argument("--map-rps", type=float, default=100.0)
    parser.add_argument("--request-every", type=float, default=2.0, help="seconds between new footage requests")
    parser.add_argument("--chunks", type=int, default=4, help="chunks per clip")
    parser.add_argument("--clip-seconds", type=int, default=4, help="length of the real H.264 clip uploaded")
    parser.add_argument("--faults", action="store_true", help="SIGKILL a random web process or worker and restart it")
    parser.add_argument("--fault-every", type=float, default=6.0, help="mean seconds between kills")
    parser.add_argument("--restart-postgres", action="store_true",
                        help="restart PostgreSQL half way (root; disrupts every other user of this PostgreSQL)")
    parser.add_argument("--web", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here (JSON)")
    args = parser.parse_args()

    from consentcam.testing.smtp import SmtpServer
    from consentcam.testing.topology import city

    with tempfile.TemporaryDirectory(prefix="consentcam-load-") as tmp, SmtpServer() as box:
        folder = Path(tmp)
        # All clients share one address here; the per-address limits on sign-in and sign-up would (rightly) slow a
        # few hundred owners registering from it, so the run lifts them.
        with city(folder, box.host, box.port, web=args.web, workers=args.workers,
                  settings={"login_max_failures": "100000", "registrations_per_address": "100000"}) as town:
            report = asyncio.run(run(args, town, box, folder))
            report["server_errors"] = server_errors(folder)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    checks = report["checks"]
    failed = (checks["owners_not_mailed"] or checks["partial_evidence"] or checks["acknowledged_but_missing"]
              or not checks["audit_chain_ok"] or report["jobs_after_drain"].get("pending") or report["jobs_after_drain"].get("running"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    threading.excepthook = lambda a: print(f"thread error: {a.exc_value!r}", file=sys.stderr)
    main()
