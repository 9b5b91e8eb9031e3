"""The message broker between the processes of one deployment (NATS), for the scale path.

An edge agent holds one WebSocket to one web process, and only that process can talk to it or receive its
segments. With ``CONSENTCAM_BROKER_URL`` set, that process answers on the broker for the device and for each relay
it holds; any other process (a web process serving a viewer, a worker running a direct fetch) asks it by
request/reply. Unset, nothing here runs: the embedded default is one process and needs no broker.

Why NATS: request/reply is the shape of every exchange here, and NATS answers "no responders" at once when no
process subscribes to a subject, which is exactly "no process holds this device's socket" (Redis pub/sub would
need a registry of holders with expiry and a reply channel of our own). Subjects map one to one onto devices,
relays and fetches; the server is one static binary (Debian: ``nats-server``) with no disk state to manage.

Subjects (``<prefix>`` is ``CONSENTCAM_BROKER_SUBJECT_PREFIX``):

- ``<prefix>.edge.device.<device_id>``: commands for the device's agent; only the process holding its socket
  subscribes, and it never acts on another device's behalf.
- ``<prefix>.edge.relay.<session_id>``: a viewer's playlist, segment and first-segment wait; only the process
  holding the relay (where the segments arrive) subscribes.
- ``<prefix>.edge.fetch.<fetch_id>``: a direct fetch's progress and clip parts, from the process that ran it.
- ``<prefix>.edge.claims``: "this process now holds device X", heard by every web process, so that a socket the
  agent left behind on another process is closed, as one process closes an agent's older socket today.

Every message is one frame: 4 bytes big-endian header length, a JSON header, then bytes (a segment part, a clip
part), the frame the agents already use. Nothing larger than the connection's ``max_payload`` is ever sent:
segments and clips travel in parts.

The broker sits inside the deployment's trust boundary, like the database: whoever can publish on it can ask a
holder to relay or fetch. A holder still accepts commands only for devices whose socket it holds, starts only
sessions the database shows open for that device, and serves only the relays it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import struct
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..settings import Settings

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], bytes]
Handler = Callable[[dict[str, Any], bytes], Awaitable[Reply | None]]

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")
HEADROOM = 8 << 10  # room left in max_payload for the frame's header and the protocol line


class BrokerUnavailable(ConnectionError):
    """The broker cannot carry the message now: none is configured, it is down, or it did not answer in time."""


class NotHeld(ConnectionError):
    """No process holds it: the broker found no responder for the device, relay or fetch."""


def pack(header: dict[str, Any], data: bytes = b"") -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(text)) + text + data


def unpack(frame: bytes) -> Reply:
    if len(frame) < 4:
        raise ValueError("a broker frame is shorter than its length prefix")
    (size,) = struct.unpack(">I", frame[:4])
    header = json.loads(frame[4:4 + size])
    if not isinstance(header, dict):
        raise ValueError("a broker frame's header is not a JSON object")
    return header, bytes(frame[4 + size:])


def token(value: str) -> str:
    """An id as one subject token; anything else (dots, wildcards, spaces) is refused, never escaped."""
    if not TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} cannot be a broker subject token")
    return value


class Broker:
    """This process's connection to the deployment's NATS. It connects in the background and reconnects by
    itself for as long as the process runs; until it is connected every request fails at once with
    ``BrokerUnavailable`` (local paths never wait on it). Subscriptions asked for while it is down are made when
    it comes up, and NATS renews them after each reconnection."""

    def __init__(self, settings: Settings, *, role: str = "web") -> None:
        if not settings.broker_url:
            raise ValueError("no broker is configured (CONSENTCAM_BROKER_URL)")
        self.servers = [s.strip() for s in settings.broker_url.split(",") if s.strip()]
        self.shown = ", ".join(re.sub(r"//[^@/]*@", "//", server) for server in self.servers)  # no password in logs
        self.prefix = settings.broker_subject_prefix
        self.timeout = settings.broker_timeout_seconds
        self.instance = uuid.uuid4().hex  # tells this process's own claims from another's
        self.name = f"consentcam-{role}-{socket.gethostname()}-{os.getpid()}"
        self.nc: Any = None
        self._ready = asyncio.Event()
        self._handlers: dict[str, Handler] = {}
        self._subscriptions: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connector: asyncio.Task[None] | None = None
        self._was_connected = False
        self._closing = False
        # Called after the first connection and after every reconnection (NATS renews subscriptions by itself,
        # but what was published while the broker was away is lost: a hook may say it again).
        self.on_connected: list[Callable[[], Awaitable[None]]] = []

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        from nats.aio.client import Client

        self.nc = Client()
        self._connector = asyncio.create_task(self._connect_logged(), name="broker-connect")
        BROKERS.add(self)

    async def _connect_logged(self) -> None:
        try:
            await self._connect()
        except asyncio.CancelledError:
            raise
        except Exception:  # e.g. credentials refused: say so, once; the remote paths keep failing clearly
            log.exception("broker: cannot use %s; edge relays held by other processes are unreachable from this "
                          "one", self.shown)

    async def _connect(self) -> None:
        from nats import errors

        async def error(exc: Exception) -> None:
            if isinstance(exc, errors.UnexpectedEOF | errors.ConnectionClosedError):
                return  # a lost connection: said once, by disconnected()
            if self._was_connected or not isinstance(exc, OSError | TimeoutError):
                log.warning("broker: %s", exc or type(exc).__name__)

        async def disconnected() -> None:
            if self._was_connected and not self._closing:
                log.warning("broker: lost the connection to %s; reconnecting", self.shown)
            self._was_connected = False

        async def reconnected() -> None:
            self._was_connected = True
            log.warning("broker: connected again")
            await self._connected_again()

        log.info("broker: connecting to %s as %s", self.shown, self.name)
        await self.nc.connect(servers=self.servers, name=self.name, allow_reconnect=True, max_reconnect_attempts=-1,
                              reconnect_time_wait=1, connect_timeout=2, ping_interval=5, max_outstanding_pings=2,
                              error_cb=error, disconnected_cb=disconnected, reconnected_cb=reconnected)
        self._was_connected = True
        log.info("broker: connected (max_payload %d bytes)", self.nc.max_payload)
        for subject in list(self._handlers):  # what was asked for while the broker was away
            await self._subscribe_now(subject)
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=self.timeout)  # the server has them before this process says it is ready
        self._ready.set()
        for subject in list(self._handlers):  # and what was asked for meanwhile
            await self._subscribe_now(subject)
        await self._connected_again()

    async def _connected_again(self) -> None:
        for hook in list(self.on_connected):
            try:
                await hook()
            except Exception:  # one hook's failure must not keep the connection from being used
                log.exception("broker: a reconnection hook failed")

    async def close(self) -> None:
        self._closing = True
        BROKERS.discard(self)
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connector
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        self._ready.clear()

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and self.nc is not None and self.nc.is_connected

    async def wait_connected(self, timeout: float) -> bool:
        """For tests and start-up checks: True once connected within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.connected

    @property
    def part_size(self) -> int:
        """The largest bytes payload one message carries here, from the server's own max_payload."""
        return max(1024, int(self.nc.max_payload) - HEADROOM)

    def subject(self, *parts: str) -> str:
        return ".".join((self.prefix, *parts))

    # --- messages -------------------------------------------------------------------------------------

    async def subscribe(self, subject: str, handler: Handler) -> None:
        """Answer requests on ``subject`` with ``handler`` (one task per request, so a long wait never holds up
        the next); a handler returning None stays silent. Subscribing again replaces the handler."""
        fresh = subject not in self._handlers
        self._handlers[subject] = handler
        if fresh and self._ready.is_set():
            await self._subscribe_now(subject)

    async def _subscribe_now(self, subject: str) -> None:
        if subject in self._subscriptions or subject not in self._handlers:
            return

        async def on_message(msg: Any) -> None:
            task = asyncio.create_task(self._answer(subject, msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        try:
            self._subscriptions[subject] = await self.nc.subscribe(subject, cb=on_message)
        except Exception as exc:  # closed or draining: the reconnection's renewal or the next subscribe does it
            log.warning("broker: could not subscribe to %s: %s", subject, exc)

    async def unsubscribe(self, subject: str) -> None:
        self._handlers.pop(subject, None)
        subscription = self._subscriptions.pop(subject, None)
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _answer(self, subject: str, msg: Any) -> None:
        handler = self._handlers.get(subject)
        if handler is None:
            return
        try:
            header, data = unpack(msg.data)
        except ValueError:
            log.warning("broker: a malformed message on %s; ignored", subject)
            return
        try:
            reply = await handler(header, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("broker: answering %s on %s failed", header.get("op"), subject)
            reply = ({"ok": False, "error": f"the holder failed: {type(exc).__name__}"}, b"")
        if reply is not None and msg.reply:
            with contextlib.suppress(Exception):  # the asker gave up, or the connection dropped: nothing to do
                await msg.respond(pack(*reply))

    async def request(self, subject: str, header: dict[str, Any], data: bytes = b"", *,
                      timeout: float | None = None) -> Reply:
        """Ask whoever answers on ``subject``. ``NotHeld`` when nobody subscribes (at once), ``BrokerUnavailable``
        when the broker is down or the answer did not come within ``timeout`` (default: the setting)."""
        from nats import errors

        if not self.connected:
            raise BrokerUnavailable("the message broker is unreachable")
        try:
            msg = await self.nc.request(subject, pack(header, data), timeout=timeout or self.timeout)
        except errors.NoRespondersError:
            raise NotHeld(subject) from None
        except errors.TimeoutError:
            raise BrokerUnavailable("no answer through the message broker in time") from None
        except (errors.Error, OSError) as exc:
            raise BrokerUnavailable(f"the message broker failed: {exc or type(exc).__name__}") from exc
        try:
            return unpack(msg.data)
        except ValueError as exc:
            raise BrokerUnavailable("a malformed answer through the message broker") from exc

    async def publish(self, subject: str, header: dict[str, Any], data: bytes = b"") -> bool:
        """Tell everyone listening; False when the broker is down (nothing is queued for later)."""
        from nats import errors

        if not self.connected:
            return False
        try:
            await self.nc.publish(subject, pack(header, data))
            return True
        except (errors.Error, OSError):
            return False


BROKERS: weakref.WeakSet[Broker] = weakref.WeakSet()  # the brokers of this process, for plugins' direct fetch


def running_broker() -> Broker | None:
    """A broker connection of this process (a connected one first), if the deployment has one."""
    brokers = sorted(BROKERS, key=lambda b: not b.connected)
    return brokers[0] if brokers else None


@contextlib.asynccontextmanager
async def open_broker(settings: Settings, *, role: str) -> AsyncIterator[Broker | None]:
    """This process's broker connection for as long as the block runs; None on the embedded default."""
    if not settings.broker_url:
        yield None
        return
    broker = Broker(settings, role=role)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()
