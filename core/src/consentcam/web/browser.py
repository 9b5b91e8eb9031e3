"""Run the web UI for tests and screenshots: a real ``consentcam serve`` in a subprocess on a free port, and Debian's
Chromium driven by Playwright. The browser is never downloaded: Playwright is pointed at ``/usr/bin/chromium``
(``apt-get install chromium``), and its absence is an error, not a reason to skip."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CONSENTCAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--headless", "--disable-dev-shm-usage", "--no-first-run"]


def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise RuntimeError(f"Chromium is required at {CHROMIUM} (Debian: apt-get install chromium); it is never downloaded")
    return CHROMIUM


def launch(playwright: Any) -> Any:
    """Debian's Chromium under Playwright (``playwright.chromium.launch`` with an explicit executable)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def consentcam_command() -> list[str]:
    found = shutil.which("consentcam", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "consentcam.cli"]


@dataclass
class Server:
    """A running ``consentcam serve`` with its own data folder and database."""

    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    demo: dict[str, Any] = field(default_factory=dict)

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run([*consentcam_command(), *args, "--json"], env=self.env, capture_output=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"consentcam {' '.join(args)} failed: {done.stderr.decode(errors='replace')[-2000:]}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def base_settings(data_dir: Path) -> dict[str, str]:
    """The settings of a throwaway server: SQLite in ``data_dir``, a fixed key, no street tiles."""
    return {
        "data_dir": str(data_dir),
        "database_url": f"sqlite+aiosqlite:///{data_dir / 'consentcam.sqlite3'}",
        "secret_key": "browser-test-key-not-for-production",
        "tile_url": "",
        "run_jobs_in_process": "true",
        "load_entry_point_plugins": "false",
    }


def settings_for(data_dir: Path, **settings: str) -> Any:
    """The same settings as an object, to prepare the database in-process before serving it."""
    from ..settings import Settings

    return Settings(_env_file=None, **{**base_settings(data_dir), **settings})  # type: ignore[call-arg]


def server_env(data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTCAM_")}
    values = {**base_settings(data_dir), "public_url": f"http://127.0.0.1:{port}", **settings}
    env.update({f"CONSENTCAM_{k.upper()}": v for k, v in values.items()})
    return env


@contextmanager
def serve(data_dir: Path, *, demo_owners: int | None = 0, timeout: float = 60.0, **settings: str) -> Iterator[Server]:
    """Migrate, optionally load the demo city (``demo_owners`` owners; None: no demo), serve, and stop at the end."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(data_dir, port, **settings)
    demo: dict[str, Any] = {}
    if demo_owners is not None:
        done = subprocess.run([*consentcam_command(), "demo", "--owners", str(demo_owners), "--json"], env=env,
                              capture_output=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"consentcam demo failed: {done.stderr.decode(errors='replace')[-2000:]}")
        demo = json.loads(done.stdout.decode().strip().splitlines()[-1])
    log = data_dir / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*consentcam_command(), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", env, process, log, demo)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"consentcam serve exited with {process.returncode}:\n{server.log_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/v1/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"consentcam serve did not answer within {timeout} s:\n{server.log_text()[-4000:]}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_clip(path: Path, seconds: int = 3, size: str = "320x240") -> Path:
    """A real H.264 MP4 made by ffmpeg (a test pattern with a clock), for uploads."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise RuntimeError("ffmpeg is required to make a test clip (Debian: apt-get install ffmpeg)")
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=duration={seconds}:size={size}:rate=25", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(path)], check=True, timeout=120)
    return path


# An init script: every Content-Security-Policy violation is kept in the page, and reported to the test through
# ``window.consentcamCspViolation`` when it exposes one (so a violation before a navigation is not lost).
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const text = `${e.violatedDirective} ${e.blockedURI} at ${location.pathname}`;
  window.__cspViolations.push(text);
  if (window.consentcamCspViolation) window.consentcamCspViolation(text);
});
"""
