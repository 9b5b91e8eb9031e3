"""The media check: is this file a video, and what is it (container, codecs, duration, resolution, creation time)?

PyAV (FFmpeg) parses untrusted files, so it runs in resident child processes (``python -m consentcam.vault.media
--serve``) with a memory limit and a timeout: a hostile or pathological clip can crash or stall only a child, which
is replaced, and the server never loads FFmpeg's libraries at all. The check reads the original file, writes nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import select
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, UnsupportedMedia

STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "gif", "webp_pipe", "bmp_pipe", "tiff_pipe", "apng", "svg_pipe"}
KEPT_TAGS = ("creation_time", "encoder", "major_brand", "make", "model", "com.apple.quicktime.make",
             "com.apple.quicktime.model", "com.apple.quicktime.creationdate", "location", "title", "comment")
CHILD_MEMORY_LIMIT = 4 << 30
TAIL_S = 3.0  # seconds of packets read at the end of a clip to see that it is whole
# File signatures of common video containers: a file that starts like one but does not open is corrupt, not "not video".
SIGNATURES = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"FLV"), (0, b"\x30\x26\xb2\x75"),
              (0, b"\x00\x00\x01\xba"))

MIME = {"mp4": "video/mp4", "mov": "video/quicktime", "matroska": "video/x-matroska", "webm": "video/webm",
        "mpegts": "video/mp2t", "avi": "video/x-msvideo", "flv": "video/x-flv", "asf": "video/x-ms-asf",
        "mpeg": "video/mpeg", "nut": "video/x-nut", "h264": "video/h264", "hevc": "video/h265"}
EXTENSION = {"mp4": "mp4", "mov": "mov", "matroska": "mkv", "webm": "webm", "mpegts": "ts", "avi": "avi", "flv": "flv",
             "asf": "wmv", "mpeg": "mpg", "nut": "nut", "h264": "h264", "hevc": "h265"}


class MediaRefused(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # not_video | corrupt
        self.detail = detail


def _looks_like_video(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(3 * 188 + 1)
    if head[0:1] == head[188:189] == head[376:377] == b"\x47":  # MPEG-TS: a sync byte every 188 bytes
        return True
    return any(head[offset:offset + len(magic)] == magic for offset, magic in SIGNATURES)


def _container_name(format_name: str, brand: str | None, video_codec: str) -> str:
    names = format_name.split(",")
    if "mp4" in names or "mov" in names:
        return "mov" if (brand or "").strip() == "qt" else "mp4"
    if "matroska" in names or "webm" in names:
        return "webm" if video_codec in ("vp8", "vp9", "av1") and "webm" in names else "matroska"
    return names[0]


def _creation_time(tags: dict[str, str]) -> str | None:
    for name in ("creation_time", "com.apple.quicktime.creationdate"):
        raw = tags.get(name)
        if not raw:
            continue
        try:
            when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when.year < 1990:  # 1904/1970 epochs written by cameras that never had their clock set
            continue
        return when.astimezone(UTC).isoformat()
    return None


def probe(path: Path) -> dict[str, Any]:
    """The facts about a clip, or ``MediaRefused``: the container opens, a video stream decodes its first picture,
    and its last packets reach the declared duration (a file cut short ends early)."""
    import av  # only ever imported in the child process

    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        if _looks_like_video(path):
            raise MediaRefused("corrupt", f"the file looks like a video container but cannot be read: {exc}") from exc
        raise MediaRefused("not_video", "the file is not a video this platform can read") from exc
    with container:
        format_name = container.format.name
        if format_name in STILL_IMAGE_FORMATS or format_name.endswith("_pipe"):
            raise MediaRefused("not_video", f"the file is a still image ({format_name}), not a video")
        videos = [s for s in container.streams.video if s.codec_context is not None]
        if not videos:
            raise MediaRefused("not_video", "the file has no video stream")
        video = videos[0]
        tags = {str(k): str(v)[:200] for k, v in container.metadata.items()}
        for key, value in video.metadata.items():
            tags.setdefault(str(key), str(value)[:200])
        video.codec_context.thread_count = 1  # one picture is decoded; no thread pool (and its arenas) needed
        try:
            first = next(container.decode(video), None)
        except av.FFmpegError as exc:
            raise MediaRefused("corrupt", f"the video stream cannot be decoded: {exc}") from exc
        if first is None:
            raise MediaRefused("corrupt", "the video stream holds no picture")
        declared = None
        if container.duration:
            declared = container.duration / av.time_base
        elif video.duration and video.time_base:
            declared = float(video.duration * video.time_base)
        start = float(video.start_time * video.time_base) if video.start_time is not None and video.time_base else 0.0
        # Read the last seconds' packets (from the keyframe before them): a file cut short ends early, and a long
        # file is not read twice. Formats without an index fall back to reading from the start.
        tail_from = 0.0
        if declared and declared > TAIL_S and video.time_base:
            try:
                container.seek(int((start + declared - TAIL_S) / video.time_base), stream=video, backward=True)
                tail_from = declared - TAIL_S
            except av.FFmpegError:
                container.seek(0)
        else:
            container.seek(0)
        packets, last_end = 0, 0.0
        try:
            for packet in container.demux(video):
                if packet.size == 0:
                    continue
                packets += 1
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    last_end = max(last_end, end)
        except av.FFmpegError as exc:
            raise MediaRefused("corrupt", f"the file is damaged near its end: {exc}") from exc
        covered = last_end - start
        if declared and declared > 1.0 and covered < 0.9 * declared - 0.5:
            raise MediaRefused("corrupt", f"the file is truncated: its video ends after {max(covered, 0):.1f} s of a "
                                          f"declared {declared:.1f} s")
        if packets == 0 and tail_from == 0.0:
            raise MediaRefused("corrupt", "the video stream holds no packets")
        brand = tags.get("major_brand")
        name = _container_name(format_name, brand, video.codec_context.name)
        rate = video.average_rate or video.guessed_rate
        audio = None
        if container.streams.audio:
            a = container.streams.audio[0]
            audio = {"codec": a.codec_context.name if a.codec_context else None,
                     "sample_rate": a.codec_context.sample_rate if a.codec_context else None,
                     "channels": a.codec_context.channels if a.codec_context else None}
        duration = declared if declared else (covered if covered > 0 else None)
        return {
            "container": name,
            "format_name": format_name,
            "mime_type": MIME.get(name, "application/octet-stream"),
            "extension": EXTENSION.get(name, "bin"),
            "duration_s": round(duration, 3) if duration else None,
            "bit_rate": container.bit_rate or None,
            "creation_time": _creation_time(tags),
            "video": {
                "codec": video.codec_context.name,
                "profile": video.codec_context.profile,
                "width": video.codec_context.width or first.width,
                "height": video.codec_context.height or first.height,
                "fps": round(float(rate), 3) if rate else None,
                "pix_fmt": video.codec_context.pix_fmt,
                "frames": video.frames or None,
            },
            "audio": audio,
            "streams": len(container.streams),
            "tags": {k: tags[k] for k in KEPT_TAGS if k in tags},
        }


def recorded_span(facts: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """When the clip was recorded, if the file says: its creation time, and that plus its duration."""
    raw = facts.get("creation_time")
    if not raw:
        return None, None
    start = datetime.fromisoformat(raw)
    duration = facts.get("duration_s")
    return start, (start + timedelta(seconds=duration)) if duration else None


class Checker:
    """Resident child processes that run ``probe``, one file at a time each: FFmpeg is loaded once per child, not
    once per clip. A child that crashes or overruns its time is killed and replaced; the file is refused."""

    def __init__(self, children: int = 2) -> None:
        self.children = children
        self._idle: list[subprocess.Popen[bytes]] = []
        self._count = 0
        self._available = threading.Condition()
        atexit.register(self.close)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "consentcam.vault.media", "--serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)

    def _take(self) -> subprocess.Popen[bytes]:
        with self._available:
            while True:
                while self._idle:
                    child = self._idle.pop()
                    if child.poll() is None:
                        return child
                    self._count -= 1
                if self._count < self.children:
                    self._count += 1
                    break
                self._available.wait()
        try:
            return self._spawn()
        except BaseException:
            self._retire(None)
            raise

    def _give_back(self, child: subprocess.Popen[bytes]) -> None:
        with self._available:
            self._idle.append(child)
            self._available.notify()

    def _retire(self, child: subprocess.Popen[bytes] | None) -> None:
        if child is not None:
            child.kill()
            child.wait()
        with self._available:
            self._count -= 1
            self._available.notify()

    def run(self, path: Path, timeout_s: float) -> dict[str, Any]:
        """Blocking: call it from a worker thread."""
        child = self._take()
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(str(path)).encode() + b"\n")
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], timeout_s)
            line = child.stdout.readline() if ready else b""
        except (OSError, ValueError):
            line, ready = b"", [True]
        if not ready:
            self._retire(child)
            return {"ok": False, "kind": "corrupt", "detail": f"the clip could not be read within {timeout_s:.0f} s"}
        if not line:
            self._retire(child)  # it died on this file
            return {"ok": False, "kind": "corrupt", "detail": "the media reader failed on this file"}
        self._give_back(child)
        return json.loads(line)

    def close(self) -> None:
        with self._available:
            idle, self._idle = self._idle, []
        for child in idle:
            if child.stdin is not None:
                child.stdin.close()
            child.wait()


_checker: Checker | None = None


_checker_lock = threading.Lock()


def _the_checker() -> Checker:
    global _checker
    with _checker_lock:
        if _checker is None:
            _checker = Checker()
        return _checker


def warm() -> None:
    """Start one child ahead of the first upload, unless one runs already (blocking: run it in a thread)."""
    checker = _the_checker()
    with checker._available:
        if checker._count:
            return
    checker._give_back(checker._take())


async def check(path: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """The media check of one file; refusals become 415 (not a video) or 422 (corrupt or truncated)."""
    answer = await asyncio.to_thread(_the_checker().run, path, timeout_s)
    if answer.get("ok"):
        return answer["facts"]
    if answer.get("kind") == "not_video":
        raise UnsupportedMedia(answer.get("detail", "not a video"))
    raise InvalidInput(answer.get("detail", "the clip is damaged"))


def _answer(path: Path) -> dict[str, Any]:
    try:
        return {"ok": True, "facts": probe(path)}
    except MediaRefused as refused:
        return {"ok": False, "kind": refused.kind, "detail": refused.detail}
    except MemoryError:
        return {"ok": False, "kind": "corrupt", "detail": "the clip needs more memory to read than any video should"}
    except OSError as exc:
        return {"ok": False, "kind": "corrupt", "detail": f"the clip cannot be read: {exc}"}


def main(argv: list[str]) -> int:
    """``python -m consentcam.vault.media FILE`` checks one file; ``--serve`` answers one JSON line per path read
    from standard input, until it closes."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT, CHILD_MEMORY_LIMIT))
    except (ValueError, OSError):
        pass
    if argv[1:] == ["--serve"]:
        for line in sys.stdin.buffer:
            sys.stdout.write(json.dumps(_answer(Path(json.loads(line)))) + "\n")
            sys.stdout.flush()
        return 0
    sys.stdout.write(json.dumps(_answer(Path(argv[1]))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
