"""The one class that talks to an ONVIF device, through ``onvif-zeep-async``.

Everything the library may raise is gathered in ``DEVICE_ERRORS`` and caught at this boundary, narrowly, and turned
into ConsentCam's errors: ``CredentialsRejected`` (the owner can fix it), ``DeviceUnreachable`` (no answer, or
not an ONVIF answer) and ``PluginError`` (the device answered, but not with what ONVIF promises). Messages go
through ``scrub`` first so that no credential ever reaches a log line, an exception or the database.

Quirks of the library, each handled here:
- ``user`` and ``passwd`` must be strings: ``None`` crashes its WS-Security header. An unauthenticated device
  gets empty strings.
- A wrong password is not an HTTP 401 but a SOAP fault (``ter:NotAuthorized``, "Sender not authorized"), raised
  by ``update_xaddrs`` after it silently falls back from GetServices to GetCapabilities.
- ``ONVIFCamera(...)`` opens aiohttp sessions: it is created inside the running loop and always closed.
- Importing ``onvif`` calls ``logging.basicConfig(level=INFO)``, which configures the root logger of a process that
  has not done so yet; the core configures logging before loading plugins, so this is harmless there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import zeep.exceptions
from consentcam import ConsentCamError, CredentialsRejected, DeviceUnreachable, PluginError
from consentcam_rtsp.masking import scrub, without_credentials
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError

from . import const
from .models import DeviceFacts, MediaProfile, Recording, Services

log = logging.getLogger(__name__)

T = TypeVar("T")

# What the library and its transport raise. zeep.exceptions.Error covers faults, transport errors and XML it
# cannot parse; OSError covers sockets; TimeoutError our own deadline; ValueError a value zeep cannot parse
# (a malformed xs:dateTime in an answer, say).
DEVICE_ERRORS: tuple[type[BaseException], ...] = (
    ONVIFError, zeep.exceptions.Error, aiohttp.ClientError, OSError, TimeoutError, ValueError,
)
_AUTH_SUBCODES = ("NotAuthorized", "FailedAuthentication", "InvalidSecurity", "FailedCheck")
_AUTH_WORDS = ("not authorized", "unauthorized", "authentication", "authorization", "credentials")


def to_core_error(exc: BaseException, what: str, secrets: tuple[str, ...] = ()) -> ConsentCamError:
    """The ConsentCam error for a library exception met while doing ``what`` (e.g. "reading device information")."""
    message = scrub(_describe(exc), secrets)
    if isinstance(exc, ONVIFAuthError) or _is_auth_fault(exc) or _status(exc) in (401, 403):
        return CredentialsRejected(f"the device refused the credentials while {what} ({message})")
    if isinstance(exc, ONVIFTimeoutError | TimeoutError | aiohttp.ClientError | OSError):
        return DeviceUnreachable(f"no answer from the device while {what}: {message}")
    if isinstance(exc, zeep.exceptions.TransportError):
        return DeviceUnreachable(f"the device answered HTTP {_status(exc)} while {what}")
    if isinstance(exc, zeep.exceptions.Fault):
        return PluginError(f"the device answered a SOAP fault while {what}: {message}")
    return PluginError(f"unexpected answer from the device while {what}: {message}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, zeep.exceptions.Fault):
        return str(exc.message or exc)
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return str(exc) or type(exc).__name__


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) or getattr(exc, "status", None)


def _is_auth_fault(exc: BaseException) -> bool:
    if not isinstance(exc, zeep.exceptions.Fault):
        return False
    subcodes = " ".join(str(getattr(code, "localname", code)) for code in (exc.subcodes or []))
    text = f"{subcodes} {exc.message or ''}".lower()
    return any(code.lower() in text for code in _AUTH_SUBCODES) or any(word in text for word in _AUTH_WORDS)


class OnvifDevice:
    """One ONVIF device at ``host:port`` with the owner's credentials. Use as ``async with OnvifDevice(...) as d``.

    Entering reads which services the device has (GetServices, falling back to GetCapabilities); each method
    is one or a few SOAP calls, each bounded by ``timeout_s``.
    """

    def __init__(self, host: str, port: int = const.DEFAULT_PORT, username: str | None = None,
                 password: str | None = None, *, timeout_s: float = const.DEFAULT_TIMEOUT_S) -> None:
        self.host, self.port = host, int(port)
        self.timeout_s = timeout_s
        self._username, self._password = username or "", password or ""  # strings: None crashes the library
        self._secrets = tuple(s for s in (self._password,) if s)
        self._camera: ONVIFCamera | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"OnvifDevice({self.host}:{self.port})"

    async def __aenter__(self) -> OnvifDevice:
        # adjust_time: sign WS-Security timestamps with the device's clock, which many cameras keep badly.
        self._camera = ONVIFCamera(self.host, self.port, self._username, self._password, no_cache=True, adjust_time=True)
        try:
            # The device service's WSDL is parsed first, outside the call's timeout: parsing is local work, which a
            # busy machine may slow down, not a device failing to answer.
            await self._call("loading the device service", self._camera.create_devicemgmt_service(), bounded=False)
            await self._call("connecting", self._camera.update_xaddrs())
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                await camera.close()
            except DEVICE_ERRORS as exc:  # closing must not hide the error that brought us here
                log.debug("closing %r: %s", self, scrub(str(exc), self._secrets))

    # --- the boundary ---------------------------------------------------------------------------------

    async def _call(self, what: str, call: Awaitable[T], *, bounded: bool = True) -> T:
        """Await one library call (within the timeout when ``bounded``); its exceptions become ConsentCam errors,
        raised outside the ``except`` block so that the library's exception (which may quote the request) is not
        chained along."""
        try:
            async with asyncio.timeout(self.timeout_s if bounded else None):
                return await call
        except DEVICE_ERRORS as exc:
            error = to_core_error(exc, what, self._secrets)
        log.info("%r: %s", self, error.detail)
        raise error

    @property
    def camera(self) -> ONVIFCamera:
        if self._camera is None:
            raise RuntimeError("use the device inside 'async with'")
        return self._camera

    async def _service(self, name: str) -> Any:
        """A service client; creating one parses its WSDL (local work, so not bounded by the timeout)."""
        return await self._call(f"opening the {name} service", self.camera.create_onvif_service(name), bounded=False)

    # --- reading --------------------------------------------------------------------------------------

    def services(self) -> Services:
        return Services(xaddrs=dict(self.camera.xaddrs))

    async def facts(self) -> DeviceFacts:
        devicemgmt = await self._service("devicemgmt")
        info = await self._call("reading device information", devicemgmt.GetDeviceInformation())
        return DeviceFacts(manufacturer=_text(info, "Manufacturer"), model=_text(info, "Model"),
                           firmware=_text(info, "FirmwareVersion"), serial=_text(info, "SerialNumber"),
                           hardware_id=_text(info, "HardwareId"))

    async def profiles(self) -> list[MediaProfile]:
        """Media profiles with their RTSP stream URIs, without credentials (the owner's stay in the vault's key)."""
        media = await self._service("media")
        found = await self._call("listing media profiles", media.GetProfiles())
        profiles = []
        for profile in found or []:
            encoder = getattr(profile, "VideoEncoderConfiguration", None)
            resolution = getattr(encoder, "Resolution", None)
            rate = getattr(encoder, "RateControl", None)
            setup = {"StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                     "ProfileToken": profile.token}
            answer = await self._call(f"asking the stream URI of profile {profile.token}", media.GetStreamUri(setup))
            uri = getattr(answer, "Uri", None)
            profiles.append(MediaProfile(
                token=str(profile.token), name=str(getattr(profile, "Name", "") or profile.token),
                encoding=_str_or_none(getattr(encoder, "Encoding", None)),
                width=_int_or_none(getattr(resolution, "Width", None)),
                height=_int_or_none(getattr(resolution, "Height", None)),
                fps=_float_or_none(getattr(rate, "FrameRateLimit", None)),
                stream_uri=without_credentials(str(uri)) if uri else None))
        return profiles

    async def recordings(self) -> list[Recording]:
        """Every recording the search service finds, with the span each holds (FindRecordings, then
        GetRecordingSearchResults until the search completes, then EndSearch)."""
        search = await self._service("search")
        query = {"Scope": {}, "MaxMatches": const.SEARCH_MAX_MATCHES,
                 "KeepAliveTime": timedelta(seconds=10)}
        token = (await self._call("starting a recording search", search.FindRecordings(query)))
        token = getattr(token, "SearchToken", token)
        found: list[Recording] = []
        try:
            for _ in range(const.SEARCH_MAX_MATCHES):
                results = await self._call("reading recording search results", search.GetRecordingSearchResults(
                    {"SearchToken": token, "MinResults": 1, "MaxResults": const.SEARCH_MAX_MATCHES,
                     "WaitTime": timedelta(seconds=1)}))
                for information in getattr(results, "RecordingInformation", None) or []:
                    recording = _recording(information)
                    if recording is None:
                        log.warning("%r: skipped a recording without a token or a span", self)
                    else:
                        found.append(recording)
                if getattr(results, "SearchState", "Completed") == "Completed":
                    break
        finally:
            try:
                await self._call("ending the recording search", search.EndSearch({"SearchToken": token}))
            except ConsentCamError as exc:  # the device ends it after KeepAliveTime anyway
                log.info("%r: %s", self, exc.detail)
        return found

    async def recording_summary(self) -> tuple[datetime, datetime] | None:
        """The span of everything the device recorded (GetRecordingSummary), or None when it recorded nothing."""
        search = await self._service("search")
        answer = await self._call("reading the recording summary", search.GetRecordingSummary())
        summary = getattr(answer, "Summary", answer)
        start, end = _utc(getattr(summary, "DataFrom", None)), _utc(getattr(summary, "DataUntil", None))
        return (start, end) if start and end and end > start else None

    async def replay_uri(self, recording_token: str) -> str:
        replay = await self._service("replay")
        setup = {"StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                 "RecordingToken": recording_token}
        answer = await self._call(f"asking the replay URI of recording {recording_token}", replay.GetReplayUri(setup))
        uri = getattr(answer, "Uri", answer)
        if not isinstance(uri, str) or not uri.startswith(("rtsp://", "rtsps://")):
            raise PluginError(f"the device gave no RTSP replay URI for recording {recording_token}")
        return uri


def _recording(information: Any) -> Recording | None:
    token = getattr(information, "RecordingToken", None)
    start = _utc(getattr(information, "EarliestRecording", None))
    end = _utc(getattr(information, "LatestRecording", None))
    if not token or not start or not end or end <= start:
        return None
    source = getattr(getattr(information, "Source", None), "Name", "") or ""
    return Recording(token=str(token), start=start, end=end, source=str(source))


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(obj: Any, name: str) -> str:
    value = getattr(obj, name, None)
    return "" if value is None else str(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
