"""The plugin host: one factory builds the plugin manager in a fixed order, and a typed facade calls it.

Order: specs, core's own plugins, entry points (group ``consentcam``), extra plugins from the caller, then
``check_pending()`` so that a misspelt hook is an error, not silence. Before any plugin is registered its
declared capabilities are read; a biometric capability (face, gait or voice identification) refuses it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginRefused
from .hooktypes import (
    AccountCredentials,
    AccountLink,
    AnalysisModel,
    CameraConnection,
    CameraRef,
    ClipSink,
    ClipToAnalyse,
    DeliveryResult,
    DiscoveredCamera,
    EvidenceRecord,
    ExportPackage,
    FetchResult,
    GeocodedPlace,
    LabelSet,
    OwnerNotification,
    PluginInfo,
    ProbeResult,
    TimeWindow,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "consentcam"

KNOWN_CAPABILITIES = frozenset(
    {
        "core",
        "discover",
        "probe",
        "fetch_recording",
        "link_account",
        "live_only",
        "live_relay",
        "notify_email",
        "notify_webhook",
        "notify_sms",
        "evidence_export",
        "records_delivery",
        "analyse_objects",
        "analyse_vehicles",
        "vehicle_colour",
        "geocode",
        "redact_blur",
    }
)
# Identification of people is refused by construction; redaction (blurring) is a different, named capability.
BIOMETRIC_CAPABILITIES = frozenset(
    {
        "face_detection_identification",
        "face_recognition",
        "face_search",
        "face_identification",
        "face_matching",
        "gait_recognition",
        "gait_identification",
        "voice_identification",
        "voice_recognition",
        "speaker_identification",
        "person_reidentification",
        "biometric",
    }
)
_BIOMETRIC_PATTERN = re.compile(
    r"(?<![a-z0-9])face_?(recogn|search|ident|match|verif|id(?![a-z]))|gait|voice_?(id|recogn|print)|speaker|biometric|re_?ident"
)


def refusal_reason(capability: str) -> str | None:
    """Why a declared capability is refused, or None if it is allowed."""
    name = capability.strip().lower()
    # Matched with every separator made one: "x-face-recognition" or "Face Search" must not slip through.
    words = re.sub(r"[^a-z0-9]+", "_", name)
    if words in BIOMETRIC_CAPABILITIES or _BIOMETRIC_PATTERN.search(words):
        return f"capability {capability!r} is biometric identification, which ConsentCam never loads"
    if name in KNOWN_CAPABILITIES or name.startswith("x-"):
        return None
    return f"capability {capability!r} is unknown (custom capabilities are named 'x-...')"


@dataclass
class LoadedPlugin:
    info: PluginInfo
    source: str  # builtin | entry point name | extra


@dataclass
class PluginHost:
    """Typed facade over the plugin manager: the rest of the core never calls ``pm.hook`` directly."""

    pm: pluggy.PluginManager
    loaded: list[LoadedPlugin] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    async def _gather(self, name: str, **kwargs: Any) -> list[Any]:
        """Every plugin gets its turn: one that raises does not stop the others; the first error is raised
        after all have run (an RMS that is down must not keep the next one from receiving evidence)."""
        caller = getattr(self.pm.hook, name)
        results = caller(**kwargs)
        out, errors = [], []
        for result in results if isinstance(results, list) else [results]:
            if inspect.isawaitable(result):
                try:
                    result = await result
                except Exception as exc:  # noqa: BLE001 - re-raised below, after the others ran
                    log.exception("plugin hook %s failed", name)
                    errors.append(exc)
                    continue
            out.append(result)
        if errors:
            raise errors[0]
        return [r for r in out if r is not None]

    async def _first(self, name: str, **kwargs: Any) -> Any:
        # firstresult cannot see through coroutines, so call implementations ourselves, newest first as pluggy does.
        for impl in reversed(getattr(self.pm.hook, name).get_hookimpls()):
            result = impl.function(**{k: kwargs[k] for k in impl.argnames})
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        return None

    async def discover_cameras(self, timeout_s: float) -> list[DiscoveredCamera]:
        found: list[DiscoveredCamera] = []
        for batch in await self._gather("consentcam_discover_cameras", timeout_s=timeout_s):
            found.extend(batch)
        return found

    async def probe_camera(self, connection: CameraConnection) -> ProbeResult | None:
        return await self._first("consentcam_probe_camera", connection=connection)

    async def fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
        return await self._first("consentcam_fetch_recording", camera=camera, window=window, sink=sink)

    async def fetch_recording_named(
        self, camera: CameraRef, window: TimeWindow, make_sink: Callable[[str], ClipSink]
    ) -> tuple[str, FetchResult | None]:
        """Like ``fetch_recording``, but each plugin gets a sink that knows its name, so custody names it."""
        for impl in reversed(self.pm.hook.consentcam_fetch_recording.get_hookimpls()):
            result = impl.function(camera=camera, window=window, sink=make_sink(impl.plugin_name))
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return impl.plugin_name, result
        return "", None

    async def link_account(self, credentials: AccountCredentials) -> AccountLink | None:
        return await self._first("consentcam_link_account", credentials=credentials)

    async def notify_owner(self, notification: OwnerNotification) -> list[DeliveryResult]:
        return await self._gather("consentcam_notify_owner", notification=notification)

    async def evidence_stored(self, evidence: EvidenceRecord) -> None:
        await self._gather("consentcam_evidence_stored", evidence=evidence)

    async def export_ready(self, export: ExportPackage) -> None:
        await self._gather("consentcam_export_ready", export=export)

    async def analyse_clip(self, clip: ClipToAnalyse) -> list[LabelSet]:
        return await self._gather("consentcam_analyse_clip", clip=clip)

    def analysis_models(self) -> list[AnalysisModel]:
        return [model for batch in self.pm.hook.consentcam_analysis_models() for model in batch or []]

    def analysers(self) -> list[str]:
        """The loaded plugins that analyse clips: when there are none, no analysis job is written."""
        return [impl.plugin_name for impl in self.pm.hook.consentcam_analyse_clip.get_hookimpls()]

    async def geocode(self, query: str, limit: int = 5) -> list[GeocodedPlace]:
        places: list[GeocodedPlace] = []
        for batch in await self._gather("consentcam_geocode", query=query, limit=limit):
            places.extend(batch)
        return places[:limit]

    def capabilities(self) -> set[str]:
        return {c for p in self.loaded for c in p.info.capabilities}


def declared_info(plugin: object, name: str) -> PluginInfo:
    declare = getattr(plugin, "consentcam_plugin_info", None)
    if declare is None:
        raise PluginRefused(f"plugin {name!r} does not declare itself (implement consentcam_plugin_info)")
    info = declare()
    if asyncio.iscoroutine(info):
        info.close()
        raise PluginRefused(f"plugin {name!r}: consentcam_plugin_info must be a plain function")
    if not isinstance(info, PluginInfo):
        raise PluginRefused(f"plugin {name!r}: consentcam_plugin_info must return consentcam.hooktypes.PluginInfo")
    for capability in info.capabilities:
        reason = refusal_reason(capability)
        if reason:
            raise PluginRefused(f"plugin {info.name!r} refused: {reason}")
    return info


def make_plugin_host(
    builtin: Iterable[object] = (),
    *,
    load_entry_points: bool = True,
    extra: Iterable[object] = (),
    strict: bool = False,
) -> PluginHost:
    """Build the host. A refused entry-point plugin is logged and skipped (``strict`` raises instead);
    a refused built-in or extra plugin always raises."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)

    def register(plugin: object, name: str, source: str, *, may_skip: bool) -> None:
        try:
            info = declared_info(plugin, name)
        except PluginRefused as exc:
            if may_skip and not strict:
                log.error("%s", exc.detail)
                host.refused.append((name, exc.detail))
                return
            raise
        pm.register(plugin, name=info.name)
        host.loaded.append(LoadedPlugin(info, source))

    for plugin in builtin:
        register(plugin, getattr(plugin, "name", type(plugin).__name__), "builtin", may_skip=False)
    if load_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the platform down
                log.error("plugin %r failed to import: %s", ep.name, exc)
                host.refused.append((ep.name, f"failed to import: {exc}"))
                if strict:
                    raise PluginRefused(f"plugin {ep.name!r} failed to import: {exc}") from exc
                continue
            register(plugin, ep.name, f"entry point {ep.value}", may_skip=True)
    for plugin in extra:
        register(plugin, getattr(plugin, "__name__", type(plugin).__name__), "extra", may_skip=False)
    pm.check_pending()
    return host
