"""``consentcam-edge pair --core URL --code CODE [--state DIR]`` and ``consentcam-edge run [--state DIR] --camera
REF=rtsp://...`` (repeatable): pair once with the one-time code from the owner portal, then run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from .agent import Agent, Identity, PairingFailed, pair

DEFAULT_STATE = os.environ.get("CONSENTCAM_EDGE_STATE", "./consentcam-edge")


def _camera(value: str) -> tuple[str, str]:
    ref, sep, url = value.partition("=")
    if not sep or not ref or not url:
        raise argparse.ArgumentTypeError("give a camera as REF=rtsp://host/path")
    return ref, url


def _recorder(value: str) -> tuple[str, dict]:
    import json

    ref, sep, text = value.partition("=")
    try:
        connection = json.loads(text) if sep and ref else None
    except ValueError:
        connection = None
    if not isinstance(connection, dict) or not isinstance(connection.get("url"), str):
        raise argparse.ArgumentTypeError("give a recorder as REF='{\"url\": \"rtsp://...\", \"playback\": {...}}'")
    return ref, connection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="consentcam-edge", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    p_pair = commands.add_parser("pair", help="exchange a one-time pairing code for this device's key")
    p_pair.add_argument("--core", required=True, help="the core's URL, e.g. https://cams.city.example")
    p_pair.add_argument("--code", required=True, help="the pairing code from the owner portal")
    p_pair.add_argument("--label", help="a name for this device in the portal")
    p_pair.add_argument("--state", default=DEFAULT_STATE, help="where the device key is kept (default %(default)s)")
    p_run = commands.add_parser("run", help="connect out to the core and offer the cameras")
    p_run.add_argument("--state", default=DEFAULT_STATE)
    p_run.add_argument("--camera", action="append", type=_camera, default=[], metavar="REF=URL",
                       help="a camera this device offers (repeatable)")
    p_run.add_argument("--recorder", action="append", type=_recorder, default=[], metavar="REF=JSON",
                       help="the recorder behind a camera, for direct fetch through the relay: an RTSP connection as "
                            "JSON, e.g. '{\"url\": \"rtsp://nvr/Streaming/Channels/101\", \"playback\": {\"family\": "
                            "\"hikvision\", \"timezone\": \"UTC\"}, \"username\": ..., \"password\": ...}' (repeatable)")
    p_run.add_argument("--ffmpeg", default="ffmpeg")
    p_run.add_argument("--rtsp-transport", choices=("tcp", "udp"), default="tcp",
                       help="how FFmpeg reads the cameras (default %(default)s; some servers serve UDP only)")
    p_run.add_argument("--max-backoff", type=float, default=30.0, help="longest wait between reconnections, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S")
    state = Path(args.state)
    if args.command == "pair":
        try:
            identity = asyncio.run(pair(args.core, args.code, args.label))
        except PairingFailed as exc:
            print(f"pairing refused: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"cannot reach the core: {exc}", file=sys.stderr)
            return 2
        path = identity.save(state)
        print(f"paired as device {identity.device_id}; key stored in {path}")
        return 0
    try:
        identity = Identity.load(state)
    except (OSError, ValueError, KeyError):
        print(f"no device key in {state}: run 'consentcam-edge pair' first", file=sys.stderr)
        return 1
    if not args.camera:
        print("give at least one --camera REF=rtsp://...", file=sys.stderr)
        return 1
    agent = Agent(identity, dict(args.camera), ffmpeg=args.ffmpeg, max_backoff_s=args.max_backoff,
                  rtsp_transport=args.rtsp_transport, recorders=dict(args.recorder))

    async def run() -> None:
        task = asyncio.ensure_future(agent.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
