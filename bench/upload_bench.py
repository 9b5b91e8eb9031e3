"""Benchmark of issue 4: a clip streamed into the evidence vault over loopback HTTP, against copy+hash+sync.

    .venv/bin/python bench/upload_bench.py                       # 256 MB and 2 GB (the issue's two sizes)
    .venv/bin/python bench/upload_bench.py --size 64M            # a quick run
    .venv/bin/python bench/upload_bench.py --size 1G --size 4G --repeat 3 --dir /mnt/vault-disk

For each size, a real video of that size is made once and cached in ``bench/.cache/`` (uncompressed frames in
Matroska, from ffmpeg's test pattern: any real video works, this one is fast to make at any size). The server's
data folder and the baseline's copy are in ``--dir`` (default: a temporary folder under ``bench/.cache/``, so on
the same disk). Then, interleaved, ``--repeat`` times:

- **baseline**: ``tee COPY < FILE | openssl dgst -sha256 && sync COPY`` on the same disk: read, write, hash in
  parallel, then flush to disk. What storing and fingerprinting the bytes costs on this machine at that moment.
- **vault**: ``curl -T FILE`` (a separate process, like an owner's client) PUTs the file through an upload link to
  ``consentcam serve`` running as a subprocess (SQLite, local vault), timed until its 201: receive, write and hash
  in one pass, fsync, the media check (PyAV, in its resident child), the atomic link into the content-addressed
  store and the committing transaction. The receipt's SHA-256 is checked against the baseline's.

Each server first takes one small clip, not counted (its first request's lazy imports and the media checker's start
are one-off costs). Reported per size: the throughput of both (MB/s) and their ratio, best of ``--repeat`` and
median (target >= 0.7); the server's peak RSS (VmHWM of the ``consentcam serve`` process, target <= 150 MB), with
the media checker child's peak RSS beside it (a separate process: PyAV loads FFmpeg there, never in the server);
and the CPU seconds the server process spent on the upload. The machine is shared and small: trust the ratio of two
measures taken seconds apart more than either absolute figure. Results go to ``bench/results/upload-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache"
CONSENTCAM = Path(sys.executable).with_name("consentcam")
FRAME = (1280, 720)  # yuv420p: 1.38 MB a frame
MB = 1_000_000


def parse_size(text: str) -> int:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)i?B?", text.strip(), re.I)
    if not found:
        raise argparse.ArgumentTypeError(f"not a size: {text} (e.g. 256M, 2G)")
    number, unit = float(found.group(1)), found.group(2).upper()
    return int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])


def make_video(path: Path, size: int) -> Path:
    """A real video of about ``size`` bytes: raw 720p frames in Matroska."""
    frame_bytes = FRAME[0] * FRAME[1] * 3 // 2
    frames = max(2, size // frame_bytes)
    if path.exists() and abs(path.stat().st_size - frames * frame_bytes) < 4 * frame_bytes:
        return path
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={FRAME[0]}x{FRAME[1]}:rate=25", "-frames:v", str(frames), "-c:v", "rawvideo",
                    "-pix_fmt", "yuv420p", "-f", "matroska", str(path)], check=True)
    return path


def baseline(source: Path, copy: Path) -> tuple[float, str]:
    copy.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    done = subprocess.run(["bash", "-c", 'tee "$1" < "$2" | openssl dgst -sha256 && sync "$1"', "_", str(copy), str(source)],
                          check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    copy.unlink(missing_ok=True)
    return elapsed, done.stdout.strip().rsplit(" ", 1)[-1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def prepare_links(settings: Any, count: int) -> list[str]:
    """Upload links of one approved request, made through the services (as the crash test does)."""
    from consentcam.platform import open_platform
    from consentcam.schemas import RequestCreate
    from consentcam.services import requests
    from consentcam.services.accounts import authenticate
    from consentcam.testing.world import World

    platform = await open_platform(settings)
    try:
        world = World(platform)
        agency = await world.agency()
        investigator, supervisor = await world.staff(agency, "investigator"), await world.staff(agency, "supervisor")
        owner = await world.owner()
        for index in range(count):
            await world.camera(owner, 41.88 + 0.00002 * index, -87.63, grant={"requests": True})
        end = platform.now() - timedelta(hours=2)
        spec = RequestCreate(case_number="BENCH-1", description="upload benchmark",
                             area={"center": {"lat": 41.88, "lon": -87.63}, "radius_m": 300},
                             window={"start": end - timedelta(hours=1), "end": end})
        request = await requests.create_request(platform, await authenticate(platform, investigator.token), spec)
        await requests.approve(platform, await authenticate(platform, supervisor.token), request.id)
        from consentcam.db.models import RequestItem
        from sqlalchemy import select

        async with platform.db.sessions() as session:
            items = (await session.execute(select(RequestItem).where(RequestItem.request_id == request.id))).scalars().all()
        return [urlsplit(requests.upload_url(platform, requests.item_token(platform, i.id, i.token_salt))).path for i in items]
    finally:
        await platform.db.dispose()


def peak_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


class Server:
    def __init__(self, work: Path) -> None:
        self.data = work / "data"
        self.database = f"sqlite+aiosqlite:///{work / 'bench.sqlite3'}"
        self.port = free_port()
        self.env = {**os.environ, "CONSENTCAM_DATA_DIR": str(self.data), "CONSENTCAM_DATABASE_URL": self.database,
                    "CONSENTCAM_SECRET_KEY": "bench-key", "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "false",
                    "CONSENTCAM_RUN_JOBS_IN_PROCESS": "false", "CONSENTCAM_UPLOAD_SIZE_LIMIT": str(64 << 30)}
        self.log_path = work / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def settings(self) -> Any:
        from consentcam.settings import Settings

        return Settings(_env_file=None, data_dir=self.data, database_url=self.database, secret_key="bench-key",  # type: ignore[call-arg]
                        load_entry_point_plugins=False, run_jobs_in_process=False)

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(CONSENTCAM), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-migrate"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the server did not start in 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


def upload(port: int, link: str, source: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(["curl", "-sS", "-X", "PUT", "-T", str(source), "-H", "Content-Type: video/x-matroska",
                           "-H", "Expect:", "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{link}"],
                          check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    body, _, status = done.stdout.rpartition("\n")
    if status != "201":
        raise SystemExit(f"upload answered {status}: {body[:500]}")
    return elapsed, json.loads(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", action="append", type=parse_size, help="file size (repeatable), e.g. 256M, 2G")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs of each measure per size")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (the disk both measures write to)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server log, database)")
    args = parser.parse_args()
    sizes = args.size or [256 << 20, 2 << 30]
    for tool in ("ffmpeg", "curl", "openssl", "tee"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed")
    CACHE.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="upload-bench-", dir=args.dir or CACHE))
    print(f"work folder {work}; load average at start {os.getloadavg()}", flush=True)
    from consentcam.db.migrate import upgrade

    server = Server(work)
    upgrade(server.database)
    links = asyncio.run(prepare_links(server.settings(), len(sizes) * (args.repeat + 1)))
    warmup = make_video(CACHE / "upload-video-warmup.mkv", 1)
    results = []
    for size in sizes:
        source = make_video(CACHE / f"upload-video-{size}.mkv", size)
        actual = source.stat().st_size
        row: dict[str, Any] = {"size_bytes": actual, "baseline_s": [], "vault_s": []}
        server.start()  # a fresh server per size: its peak RSS is this size's
        try:
            upload(server.port, links.pop(), warmup)  # first-request costs (lazy imports, the checker's start) aside
            for _ in range(args.repeat):
                seconds, digest = baseline(source, work / "copy.bin")
                row["baseline_s"].append(seconds)
                cpu_before = cpu_seconds(server.process.pid)  # type: ignore[union-attr]
                seconds, receipt = upload(server.port, links.pop(), source)
                row.setdefault("server_cpu_s", []).append(cpu_seconds(server.process.pid) - cpu_before)  # type: ignore[union-attr]
                assert receipt["sha256"] == digest and receipt["size"] == actual, (receipt, digest)
                row["vault_s"].append(seconds)
                for stored in (server.data / "evidence").rglob(receipt["sha256"]):
                    stored.unlink()  # keep the disk from filling up between runs
            assert server.process is not None
            row["server_peak_rss_kb"] = peak_rss_kb(server.process.pid)
            row["media_checker_peak_rss_kb"] = max([peak_rss_kb(c) or 0 for c in children(server.process.pid)] or [0])
        finally:
            server.stop()
        base, vault = min(row["baseline_s"]), min(row["vault_s"])
        row.update(baseline_mb_s=actual / MB / base, vault_mb_s=actual / MB / vault, ratio=base / vault,
                   ratio_median=statistics.median(row["baseline_s"]) / statistics.median(row["vault_s"]))
        results.append(row)
        print(f"{actual / MB:8.0f} MB  baseline {row['baseline_mb_s']:7.1f} MB/s  vault {row['vault_mb_s']:7.1f} MB/s  "
              f"ratio {row['ratio']:.2f} best-of-{args.repeat} / {row['ratio_median']:.2f} median (target >= 0.7)  "
              f"server peak RSS {row['server_peak_rss_kb'] / 1024:.1f} MB (target <= 150)  media checker "
              f"{row['media_checker_peak_rss_kb'] / 1024:.1f} MB  server CPU {min(row['server_cpu_s']):.2f} s", flush=True)
    print(f"load average at end {os.getloadavg()}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"upload-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"host": host.node(), "cpus": os.cpu_count(), "sizes": results,
                               "load_average_end": os.getloadavg()}, indent=2))
    print(f"written {out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
