"""Edge relay (issue 7): the latency the relay adds, and the agent's CPU per stream.

One command: ``.venv/bin/python bench/relay_bench.py [--seconds 60]``.

A camera (rtsp-server-perl fed by FFmpeg looping the test recording at its real rate: every frame carries its
number as a block code) is read at the same time by
- the relay: the real ``consentcam-edge`` agent (stream copy into 1-second HLS segments) sending to the real core
  over its WebSocket, and a viewer polling the session's playlist over HTTP every 50 ms;
- the baseline: FFmpeg alone making the same 1-second HLS segments into a local folder, watched every 50 ms.

For each segment the moment it became fetchable is noted; each of its frames (decoded with PyAV, its number read
from the pixels) was published at ``publisher start + number / fps``. Latency of a frame = fetchable - published.
The publisher's start is taken just before it is launched, so both figures carry the same small offset (its
start-up); the relay's *added* latency is the difference of the medians. CPU: the agent and its FFmpeg child
(from /proc), against the baseline FFmpeg, over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "fusus_edge" / "tests"))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its children that have been waited for (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12)) / CLK_TCK


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def frame_times(data: bytes, recording, published_at: float) -> list[float]:
    from consentcam.testing.rtsp_peer import frame_number
    from edge_testkit import decode_frames

    out = []
    for frame in decode_frames(data):
        number = frame_number(frame.to_ndarray(format="gray"))
        if number is not None:
            out.append(published_at + number / recording.fps)
    return out


async def revocation_cycles(r, count: int) -> list[float]:
    """Grant live view, open a session, wait for a segment, revoke; time until the agent confirms its stop."""
    taken = []
    camera_id = r.cameras["always"]
    for _ in range(count):
        status, _ = await r.call("PUT", f"/api/v1/cameras/{camera_id}/grants", r.owner, json={"map": True, "live": "always"})
        assert status == 200
        status, body = await r.open("always", reason="revocation timing")
        assert status == 201, body
        await r.wait_segments(body["id"], 1)
        started = time.monotonic()
        status, _ = await r.call("DELETE", f"/api/v1/cameras/{camera_id}/grants", r.owner)
        assert status == 200
        while not r.agent_said("stopped", body["id"]):
            await asyncio.sleep(0.01)
        taken.append(time.monotonic() - started)
    return taken


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to measure (the loop is 90 s: keep under 80)")
    parser.add_argument("--revocations", type=int, default=10, help="open-then-revoke cycles timed after the window")
    args = parser.parse_args()
    if args.seconds > 80:
        parser.error("--seconds must stay under 80 (the recording loops at 90 s and frame numbers would wrap)")

    from consentcam.testing.databases import SqliteDatabases
    from consentcam.testing.rtsp_peer import UdpRelay, make_recording
    from edge_testkit import rig

    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    recording = make_recording(work / "recording")
    (work / "udp").mkdir()
    relay = UdpRelay(recording, folder=work / "udp")
    published: list[float] = []
    original_start = relay._publisher.start

    def start_publisher(argv):  # note the wall time the publisher is launched (frame 0 leaves shortly after)
        published.append(time.time())
        return original_start(argv)

    relay._publisher.start = start_publisher  # type: ignore[method-assign]
    relay.start()
    database_url = await asyncio.to_thread(SqliteDatabases(work / "tpl").new, work / "db")
    try:
        async with rig(database_url, work, relay.url, ("always",), agent_args=("--rtsp-transport", "udp"),
                       via_proxy=False) as r:
            t0 = published[0]
            baseline_dir = work / "baseline"
            baseline_dir.mkdir()
            baseline = await asyncio.create_subprocess_exec(
                "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "udp", "-i", relay.url,
                "-map", "0:v:0", "-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
                "-hls_flags", "temp_file", "-hls_segment_filename", str(baseline_dir / "seg_%06d.ts"),
                str(baseline_dir / "live.m3u8"))
            status, body = await r.open("always", reason="relay benchmark")
            assert status == 201, body
            session_id = body["id"]
            relay_seen: dict[int, float] = {}
            base_seen: dict[str, float] = {}
            agent_pid = r.agent.pid
            await r.wait_segments(session_id, 1)
            cpu_start = {"agent": cpu_seconds(agent_pid), "agent_ffmpeg": sum(cpu_seconds(c) for c in children(agent_pid)),
                         "baseline": cpu_seconds(baseline.pid)}
            measure_start = time.monotonic()
            relay_data: dict[int, bytes] = {}
            while time.monotonic() - measure_start < args.seconds:
                now = time.time()
                for seq in await r.segments(session_id):
                    if seq not in relay_seen:
                        relay_seen[seq] = now
                        _, data = await r.call("GET", f"/api/v1/live-sessions/{session_id}/segments/{seq}.ts",
                                                     r.investigator)
                        relay_data[seq] = data if isinstance(data, bytes) else b""
                try:
                    listed = [line for line in (baseline_dir / "live.m3u8").read_text().splitlines() if line.endswith(".ts")]
                except OSError:
                    listed = []
                for name in listed:
                    base_seen.setdefault(name, now)
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - measure_start
            agent_cpu = cpu_seconds(agent_pid) - cpu_start["agent"]
            agent_ffmpeg_cpu = sum(cpu_seconds(c) for c in children(agent_pid)) - cpu_start["agent_ffmpeg"]
            base_cpu = cpu_seconds(baseline.pid) - cpu_start["baseline"]
            baseline.terminate()
            await baseline.wait()
            stops = await revocation_cycles(r, args.revocations)
    finally:
        relay.stop()

    # the first segment of each is partial (joined mid-GOP) and may predate the window: leave it out
    relay_lat = [seen - t for seq, seen in sorted(relay_seen.items())[1:]
                 for t in frame_times(relay_data[seq], recording, t0)]
    base_lat = [seen - t for name, seen in sorted(base_seen.items())[1:]
                for t in frame_times((baseline_dir / name).read_bytes(), recording, t0)]
    if not relay_lat or not base_lat:
        print("no frames measured", file=sys.stderr)
        return 1
    relay_med, base_med = statistics.median(relay_lat), statistics.median(base_lat)
    print(f"window {elapsed:.0f} s; relay segments {len(relay_seen)}, baseline segments {len(base_seen)}")
    print(f"latency, frame published -> fetchable (median over {len(relay_lat)} frames):")
    print(f"  relay    {relay_med:6.2f} s   (p10 {statistics.quantiles(relay_lat, n=10)[0]:.2f}, "
          f"p90 {statistics.quantiles(relay_lat, n=10)[-1]:.2f})")
    print(f"  baseline {base_med:6.2f} s   (FFmpeg alone, same segmenting)")
    print(f"  added by the relay: {relay_med - base_med:+.2f} s; ratio {relay_med / base_med:.2f}  (target: relay <= 3 s)")
    print("CPU, share of one core over the window:")
    print(f"  agent (Python) {100 * agent_cpu / elapsed:5.1f} %  + its FFmpeg {100 * agent_ffmpeg_cpu / elapsed:5.1f} %"
          f"  = {100 * (agent_cpu + agent_ffmpeg_cpu) / elapsed:5.1f} %  (target < 5 %)")
    print(f"  baseline FFmpeg {100 * base_cpu / elapsed:5.1f} %")
    if stops:
        print(f"revocation -> the agent confirmed its relay stopped, over {len(stops)} sessions: median "
              f"{statistics.median(stops):.2f} s, max {max(stops):.2f} s (target: segments stop within 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
