"""Benchmark of issue 3's delivery target: email notifications per second to a local SMTP server (target >= 500/s).

    .venv/bin/python bench/smtp_bench.py                      # channel variants + the outbox worker on both backends
    .venv/bin/python bench/smtp_bench.py --backends ""         # the channel variants only (no database)

The SMTP peer is aiosmtpd in its own process (so it does not share our GIL), answering 250 to every message and
counting them without parsing them: the peer's own work is not what is measured. Interleaved rounds of:

- **channel**: ``EmailChannel.consentcam_notify_owner`` (the platform's channel: its message building, its pool of
  ``smtp_connections`` reused connections) for ``--messages`` notifications at ``--concurrency``;
- **baseline, a connection per message**: ``aiosmtplib.send`` of messages built beforehand, which is what the
  channel did before it pooled connections (connect, EHLO, send, QUIT for every message);
- **ceiling**: ``--concurrency`` raw connections each sending prebuilt messages back to back, no channel at all.

Then the platform's whole delivery path, the outbox worker running ``notify.request`` jobs of a fan-out request
(each: read the request, the owner and the items, derive the links, build and send the message, record the
outcome), one job at a time (the baseline) and ``worker_concurrency`` at a time, on the cached databases of
``match_bench.py`` (20,000 metro cameras; built in seconds on first use).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import match_bench as mb  # noqa: E402
from common import CACHE_DIR, RESULTS_DIR, smtp_reused_connections  # noqa: E402

TARGET_PER_S = 500.0

PEER = r"""
import sys, threading
from aiosmtpd.controller import Controller
from consentcam.testing.smtp import free_port

count = 0
lock = threading.Lock()

class Counting:
    async def handle_DATA(self, server, session, envelope):
        global count
        with lock:
            count += 1
        return "250 OK"

port = free_port()
controller = Controller(Counting(), hostname="127.0.0.1", port=port)
controller.start()
print(port, flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        with lock:
            print(count, flush=True)
    elif line.strip() == "stop":
        break
controller.stop()
"""


class CountingPeer(mb.SmtpPeer):
    def __enter__(self) -> CountingPeer:
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", PEER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.host = "127.0.0.1"
        return self


async def channel_variants(peer: CountingPeer, n: int, concurrency: int, rounds: int, connections: int) -> dict[str, Any]:
    import aiosmtplib
    from consentcam.channels import EmailChannel

    settings = mb._settings("sqlite+aiosqlite:///:memory:", CACHE_DIR / "data")
    settings.smtp_host, settings.smtp_port, settings.smtp_connections = peer.host, peer.port, connections
    notes = [mb._notification(i) for i in range(n)]

    def prebuilt(note: Any) -> EmailMessage:
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = settings.smtp_from, note.email, note.subject
        m["Message-ID"] = f"<{note.idempotency_key}@localhost>"
        m.set_content(note.text)
        return m

    messages = [prebuilt(note) for note in notes]

    async def connection_per_message(i: int) -> bool:
        await aiosmtplib.send(messages[i], hostname=peer.host, port=peer.port, timeout=20)
        return True

    runs: dict[str, list[float]] = {"channel": [], "connection_per_message": [], "ceiling": []}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    before = peer.count()
    for r in range(rounds):  # interleaved and rotated, so a noisy moment hits every variant alike
        order = list(runs)
        order = order[r % 3:] + order[:r % 3]
        for name in order:
            c0 = time.process_time()
            if name == "channel":
                channel = EmailChannel(settings)

                async def via_channel(i: int, channel: EmailChannel = channel) -> bool:
                    result = await channel.consentcam_notify_owner(notes[i])
                    return bool(result and result.delivered)

                dt = await mb._bounded(n, concurrency, via_channel)
                await channel.aclose()
            elif name == "connection_per_message":
                dt = await mb._bounded(n, concurrency, connection_per_message)
            else:
                dt = await smtp_reused_connections(peer.host, peer.port, messages, concurrency)
            runs[name].append(n / dt)
            cpu[name].append((time.process_time() - c0) / n * 1e3)
            mb.log(f"  {name}: {n / dt:.0f} msgs/s")
    received = peer.count() - before
    out: dict[str, Any] = {name: {"msgs_per_s_median": statistics.median(v), "msgs_per_s": v,
                                  "client_cpu_ms_per_msg": statistics.median(cpu[name])} for name, v in runs.items()}
    out.update(messages=n, concurrency=concurrency, rounds=rounds, connections=connections, received=received,
               expected=3 * n * rounds)
    out["channel_over_connection_per_message"] = out["channel"]["msgs_per_s_median"] / out["connection_per_message"]["msgs_per_s_median"]
    out["channel_over_ceiling"] = out["channel"]["msgs_per_s_median"] / out["ceiling"]["msgs_per_s_median"]
    return out


async def worker_variants(peer: CountingPeer, backend: str, jobs: int, concurrency: int) -> dict[str, Any]:
    if backend == "sqlite":
        url, meta = await mb.build_sqlite(20_000, 1, False)
    else:
        url, meta = await mb.build_postgres(20_000, 1, False)
    p = await mb._open(url)
    out: dict[str, Any] = {}
    try:
        for name, c in (("one_at_a_time", 1), ("concurrent", concurrency), ("one_at_a_time_again", 1)):
            result = await mb.bench_drain(p, meta, (peer.host, peer.port), jobs, concurrency=c, batch=max(20, 2 * c))
            assert result["done"] == result["jobs"], result
            out[name] = result
            mb.log(f"  {backend} worker, {c} at a time: {result['jobs_per_s']:.0f} jobs/s")
    finally:
        await p.db.dispose()
    baseline = statistics.mean([out["one_at_a_time"]["jobs_per_s"], out["one_at_a_time_again"]["jobs_per_s"]])
    out["concurrent_over_one_at_a_time"] = out["concurrent"]["jobs_per_s"] / baseline
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = datetime.now(UTC)
    result: dict[str, Any] = {"config": vars(args) | {"loadavg_start": [round(x, 2) for x in os.getloadavg()]},
                              "started": started.isoformat()}
    with CountingPeer() as peer:
        mb.log(f"SMTP channel: {args.messages} messages per variant, concurrency {args.concurrency}, {args.rounds} rounds")
        result["channel"] = await channel_variants(peer, args.messages, args.concurrency, args.rounds, args.connections)
        result["worker"] = {}
        for backend in args.backends:
            mb.log(f"outbox worker on {backend}: {args.jobs} notify.request jobs per variant")
            result["worker"][backend] = await worker_variants(peer, backend, args.jobs, args.worker_concurrency)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result["json"] = str(RESULTS_DIR / f"smtp-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    return result


def report(result: dict[str, Any]) -> None:
    c = result["channel"]
    ok = "OK" if c["channel"]["msgs_per_s_median"] >= TARGET_PER_S else "MISSED"
    print(f"\nSMTP to a local aiosmtpd (own process, counting), {c['messages']} messages x {c['rounds']} rounds, "
          f"concurrency {c['concurrency']}; load average at start {result['config']['loadavg_start']}")
    print(f"  EmailChannel ({c['connections']} pooled connections)  {c['channel']['msgs_per_s_median']:6.0f} msgs/s "
          f"(target >= {TARGET_PER_S:g}: {ok}); client CPU {c['channel']['client_cpu_ms_per_msg']:.2f} ms/msg")
    print(f"  baseline: a connection per message     {c['connection_per_message']['msgs_per_s_median']:6.0f} msgs/s   "
          f"channel / baseline {c['channel_over_connection_per_message']:.2f}x")
    print(f"  ceiling: {c['concurrency']} raw reused connections     {c['ceiling']['msgs_per_s_median']:6.0f} msgs/s   "
          f"channel / ceiling {c['channel_over_ceiling']:.2f}x")
    print(f"  server received {c['received']} of {c['expected']}")
    for backend, w in result["worker"].items():
        print(f"  outbox worker on {backend}, {w['concurrent']['jobs']} notify.request jobs: "
              f"{w['one_at_a_time']['jobs_per_s']:.0f} / {w['one_at_a_time_again']['jobs_per_s']:.0f} jobs/s one at a time, "
              f"{w['concurrent']['jobs_per_s']:.0f} jobs/s {w['concurrent']['concurrency']} at a time "
              f"({w['concurrent_over_one_at_a_time']:.2f}x)")
    print(f"load average at end {result['loadavg_end']}; JSON: {result['json']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=20, help="notifications in flight at once")
    ap.add_argument("--connections", type=int, default=8, help="the channel's smtp_connections")
    ap.add_argument("--backends", default="sqlite,postgresql", type=lambda s: [b.strip() for b in s.split(",") if b.strip()])
    ap.add_argument("--jobs", type=int, default=400, help="notify.request jobs per worker variant")
    ap.add_argument("--worker-concurrency", type=int, default=8)
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    Path(result["json"]).write_text(json.dumps(result, indent=2, default=str))
    report(result)


if __name__ == "__main__":
    main()
