"""An RTSP test peer built on Debian's gst-rtsp-server: a live camera and recorder-like playback mounts.

It runs under Debian's own ``/usr/bin/python3`` (the GObject bindings, ``python3-gst-1.0``, are built for it, not
for the project's virtual environment), started by ``consentcam.testing.rtsp_peer``. Importing this module does
nothing; GStreamer is loaded in ``main`` only, so the core's import checks can import it anywhere.

One process serves one or more RTSP servers, each on its own port (the OS picks it; the ports are printed as one
``READY {json}`` line on standard output). A server may offer:

- ``/live``: a live camera, ``videotestsrc`` with ``clockoverlay`` burning in the wall-clock time, H.264.
- A recorder: playback by time of one recorded H.264 file whose first frame was taken at ``recording_start``
  (epoch seconds, UTC). The time window is read from the URL in the recorder's own time zone, the way the
  common NVR families put it there:

    /Streaming/tracks/<channel>01?starttime=YYYYMMDDThhmmssZ&endtime=YYYYMMDDThhmmssZ   (Hikvision)
    /cam/playback?channel=N&starttime=YYYY_MM_DD_hh_mm_ss&endtime=YYYY_MM_DD_hh_mm_ss   (Dahua)
    /recording?start=T&end=T   (generic: epoch seconds, or ISO 8601; without an offset in the recorder's zone)

  The Hikvision ``Z`` is taken literally as a suffix and the time as the recorder's local time, as many of
  those recorders do; a recorder configured with ``timezone: UTC`` makes it true UTC.

How the window is honoured: FFmpeg, like most RTSP clients, sends ``Range: npt=0.000-`` with PLAY, and the
server seeks to what PLAY asks. So a recorder's media moves that one range into the window: ``npt=x-`` becomes
``npt=<offset+x>-<offset+duration>``, ``offset`` being the window start's place in the file (the request cannot
be rewritten from Python: the bindings hand the handler a copy, hence ``RecorderMedia.do_convert_range``). The
server then seeks the file to the window's start (the key frame at or before it; the recording has one each
whole second) and ends the stream (EOS, RTCP BYE) at the window's end, or at the file's end if that comes first.
A window that holds nothing recorded is answered 404 Not Found, as recorders do. The recorded bytes are sent as
they are: no decoding, no re-encoding. (Quirks met on the way: the server drops the query from Content-Base, so
only DESCRIBE carries the window, and mount points match whole paths, so each Hikvision track has its own.)

Options per server: ``protocols`` ("tcp+udp", "tcp" or "udp"; a "udp" server answers a TCP-interleaved SETUP
with 461 Unsupported Transport, as UDP-only cameras do) and ``auth`` ([user, password], Basic).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

LIVE_PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 "
    "! clockoverlay time-format=\"%H:%M:%S\" font-desc=\"Sans 20\" "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=300 "
    "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
RECORDING_PIPELINE = "( filesrc location=\"{path}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
# Mount points match whole paths (and a control suffix), not prefixes: each Hikvision track is a mount of its own.
RECORDER_MOUNTS = (*(f"/Streaming/tracks/{channel}0{track}" for channel in range(1, 5) for track in (1, 2)),
                   "/cam/playback", "/recording")

_HIKVISION = re.compile(r"starttime=(\d{8}T\d{6})Z?.*?endtime=(\d{8}T\d{6})Z?", re.I)
_DAHUA = re.compile(r"starttime=(\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}).*?endtime=(\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2})", re.I)
_GENERIC_START = re.compile(r"[?&]start=([^&/]+)")
_GENERIC_END = re.compile(r"[?&]end=([^&/]+)")


def _zone(name: str):  # noqa: ANN202 - a tzinfo
    from zoneinfo import ZoneInfo

    return UTC if name.upper() in {"UTC", "Z"} else ZoneInfo(name)


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def _generic_time(text: str, zone: Any) -> datetime:
    text = _unquote(text)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def parse_window(path: str, query: str, zone: Any) -> tuple[datetime, datetime] | None:
    """The asked window in UTC, from a recorder URL's path and query; None when it is not a playback URL."""
    text = f"{path}?{query or ''}"
    if path.startswith("/Streaming/tracks"):
        found = _HIKVISION.search(text)
        fmt = "%Y%m%dT%H%M%S"
    elif path.startswith("/cam/playback"):
        found = _DAHUA.search(text)
        fmt = "%Y_%m_%d_%H_%M_%S"
    elif path.startswith("/recording"):
        start, end = _GENERIC_START.search(text), _GENERIC_END.search(text)
        if not (start and end):
            return None
        return _generic_time(start.group(1), zone).astimezone(UTC), _generic_time(end.group(1), zone).astimezone(UTC)
    else:
        return None
    if not found:
        return None
    start, end = (datetime.strptime(group, fmt).replace(tzinfo=zone) for group in found.groups())
    return start.astimezone(UTC), end.astimezone(UTC)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# GStreamer elements the pipelines use, and the Debian package that ships each.
ELEMENTS = {
    "videotestsrc": "gstreamer1.0-plugins-base",
    "clockoverlay": "gstreamer1.0-x",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "qtdemux": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad",
    "filesrc": "gstreamer1.0-plugins-base",
}


def missing_packages() -> list[str]:
    """Debian packages this peer needs and lacks; empty when it can run."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import Gst, GstRtspServer  # noqa: F401
    except (ImportError, ValueError) as exc:
        log(f"GObject bindings: {exc}")
        return ["python3-gst-1.0", "gir1.2-gst-rtsp-server-1.0"]
    Gst.init(None)
    return sorted({package for element, package in ELEMENTS.items() if Gst.ElementFactory.find(element) is None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print the missing Debian packages as JSON and exit")
    parser.add_argument("--config", help="JSON: {recording, recording_start, width, height, fps, servers: [...]}")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if args.check or missing:
        print("MISSING " + json.dumps(missing), flush=True)
        return 0 if args.check else 3
    config = json.loads(args.config)

    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    recording_start = datetime.fromtimestamp(float(config["recording_start"]), UTC)
    recording_end = recording_start + timedelta(seconds=float(config["recording_seconds"]))
    size = {"width": config.get("width", 320), "height": config.get("height", 240), "fps": config.get("fps", 10)}
    protocols = {
        "tcp+udp": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP,
        "tcp": GstRtsp.RTSPLowerTrans.TCP,
        "udp": GstRtsp.RTSPLowerTrans.UDP,
    }

    class RecorderMedia(GstRtspServer.RTSPMedia):
        """One playback: ``offset`` is where the asked window starts in the file, ``duration`` its length."""

        offset = 0.0
        duration = 0.0
        play_pending = False

        def do_convert_range(self, range: Any, unit: Any) -> bool:
            converted = GstRtspServer.RTSPMedia.do_convert_range(self, range, unit)
            # Called for the client's PLAY range just before the seek, and also when the server reports ranges;
            # only the PLAY range is moved into the window (the reports say where in the file we are).
            if converted and self.play_pending:
                self.play_pending = False
                asked = range.min.seconds if range.min.type == GstRtsp.RTSPTimeType.SECONDS else 0.0
                range.min.type = GstRtsp.RTSPTimeType.SECONDS
                range.min.seconds = max(0.0, self.offset + min(asked, self.duration))
                range.max.type = GstRtsp.RTSPTimeType.SECONDS
                range.max.seconds = max(range.min.seconds, self.offset + self.duration)
                log(f"recorder: playing npt={range.min.seconds:.3f}-{range.max.seconds:.3f} of the recording")
            return converted

    class RecorderFactory(GstRtspServer.RTSPMediaFactory):
        """Playback of the recorded file; a URL without a readable window gets no element (the server answers 400)."""

        def __init__(self, zone: Any) -> None:
            super().__init__()
            self.zone = zone
            self.set_shared(False)
            self.set_media_gtype(RecorderMedia)
            self.asked: tuple[float, float] = (0.0, 0.0)

        def do_create_element(self, url: Any) -> Any:
            window = parse_window(url.abspath, url.query, self.zone)
            if window is None:
                log(f"recorder: no window in {url.abspath}?{url.query}")
                return None
            start, end = window
            self.asked = ((start - recording_start).total_seconds(), max(0.0, (end - start).total_seconds()))
            log(f"recorder: {url.abspath}?{url.query} is {start.isoformat()} to {end.isoformat()}")
            return Gst.parse_launch(RECORDING_PIPELINE.format(path=config["recording"]))

        def do_media_configure(self, media: Any) -> None:
            # Called right after do_create_element, within the same construct call, for the media it built.
            media.offset, media.duration = self.asked

    class RecorderMountPoints(GstRtspServer.RTSPMountPoints):
        """Answers 404 Not Found, as recorders do, to a playback URL whose window holds nothing recorded."""

        def __init__(self, zone: Any) -> None:
            super().__init__()
            self.zone = zone

        def do_make_path(self, url: Any) -> Any:
            window = parse_window(url.abspath, url.query, self.zone) if url.query else None
            if window is not None and (window[1] <= recording_start or window[0] >= recording_end):
                log(f"recorder: nothing recorded from {window[0].isoformat()} to {window[1].isoformat()}: 404")
                return None
            return GstRtspServer.RTSPMountPoints.do_make_path(self, url)

    def on_client(server: Any, client: Any) -> None:
        def pre_play(client: Any, ctx: Any) -> Any:
            # The request cannot be edited from Python (bindings hand out a copy), so the media moves the range.
            if isinstance(ctx.media, RecorderMedia):
                ctx.media.play_pending = True
            return GstRtsp.RTSPStatusCode.OK

        client.connect("pre-play-request", pre_play)

    ports: dict[str, int] = {}
    servers = []
    for spec in config["servers"]:
        server = GstRtspServer.RTSPServer()
        server.set_address("127.0.0.1")
        server.set_service("0")
        if spec.get("recorder_timezone"):
            server.set_mount_points(RecorderMountPoints(_zone(spec["recorder_timezone"])))
        mounts = server.get_mount_points()
        factories = []
        if spec.get("live"):
            live = GstRtspServer.RTSPMediaFactory()
            live.set_launch(LIVE_PIPELINE.format(**size))
            live.set_shared(True)
            mounts.add_factory("/live", live)
            factories.append(live)
        zone_name = spec.get("recorder_timezone")
        if zone_name:
            zone = _zone(zone_name)
            for mount in RECORDER_MOUNTS:
                factory = RecorderFactory(zone)
                mounts.add_factory(mount, factory)
                factories.append(factory)
            server.connect("client-connected", on_client)
        for factory in factories:
            factory.set_protocols(protocols[spec.get("protocols", "tcp+udp")])
        if spec.get("auth"):
            user, password = spec["auth"]
            auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken()
            token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "owner")
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
            server.set_auth(auth)
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role("owner", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
            permissions.add_permission_for_role("owner", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
            for factory in factories:
                factory.set_permissions(permissions)
        if server.attach(None) == 0:
            log(f"could not attach server {spec['name']}")
            return 2
        ports[spec["name"]] = server.get_bound_port()
        servers.append(server)

    print("READY " + json.dumps(ports), flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 15, loop.quit)  # SIGTERM: leave cleanly
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 2, loop.quit)
    # When the launching test process dies, our standard input closes: leave too, so no orphan keeps a port.
    GLib.io_add_watch(GLib.IOChannel.unix_new(0), GLib.PRIORITY_DEFAULT, GLib.IOCondition.HUP | GLib.IOCondition.IN,
                      lambda *_: loop.quit() or False)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())



