"""Every hook a ConsentCam plugin may implement. The core knows no vendor; vendors reach it only through these.

Hooks are grouped by lifecycle phase. A ``firstresult`` hook stops at the first non-None result. Every hook
takes and returns the typed values of ``consentcam.hooktypes``. Async hooks are coroutine functions; the host
awaits them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
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

PROJECT = "consentcam"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- declaration --------------------------------------------------------------------------------------


@hookspec
def consentcam_plugin_info() -> PluginInfo:
    """Called once, before the plugin is registered: declare name, version and capabilities.

    Every plugin must implement it. A plugin declaring a biometric capability is refused and never loaded.
    """


# --- cameras ------------------------------------------------------------------------------------------


@hookspec
async def consentcam_discover_cameras(timeout_s: float) -> list[DiscoveredCamera]:
    """Called by ``consentcam discover`` and the portal: find cameras on the local network within ``timeout_s``.

    Return what was found (possibly empty); every plugin's results are merged.
    """


@hookspec(firstresult=True)
async def consentcam_probe_camera(connection: CameraConnection) -> ProbeResult | None:
    """Called when an owner probes a camera: read device facts, media profiles and capabilities.

    Return None when ``connection.kind`` is not yours; stops at the first non-None result. Raise
    ``DeviceUnreachable`` or ``CredentialsRejected`` for the two failures an owner can act on.
    """


@hookspec(firstresult=True)
async def consentcam_fetch_recording(camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
    """Called by a direct-fetch job, only after the core checked the camera's ``direct_fetch`` grant at that moment.

    Pull exactly ``window`` from the camera's or recorder's storage into files, hand each to ``sink`` and report
    what is missing. Return None when the camera is not yours; stops at the first non-None result.
    """


# --- owners -------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
async def consentcam_link_account(credentials: AccountCredentials) -> AccountLink | None:
    """Called when an owner links an account at a vendor's cloud (e.g. Ring) in the portal.

    Exchange the credentials for what later calls need (a refresh token) and return it in ``AccountLink.secret``;
    the core keeps only that, encrypted, and hands it back as ``CameraRef.account``. Return an ``AccountLink``
    with ``code_required`` when the vendor asks for a two-factor code. Return None when ``credentials.provider``
    is not yours; stops at the first non-None result. Raise ``CredentialsRejected`` when the vendor refuses the
    credentials or the code, ``DeviceUnreachable`` when it cannot be reached. Never log what the owner typed.
    """


@hookspec
async def consentcam_notify_owner(notification: OwnerNotification) -> DeliveryResult | None:
    """Called by the notification job: deliver one message through your channel if the owner chose it.

    Return a ``DeliveryResult`` when you tried, None when the owner did not choose your channel.
    """


# --- evidence -----------------------------------------------------------------------------------------


@hookspec
async def consentcam_evidence_stored(evidence: EvidenceRecord) -> None:
    """Called by a job after a clip is wholly in the vault and verified: push it to an RMS/DEMS if you are one."""


@hookspec
async def consentcam_export_ready(export: ExportPackage) -> None:
    """Called after an export package for a request is built and signed: deliver it if you are a records system."""


@hookspec
async def consentcam_analyse_clip(clip: ClipToAnalyse) -> LabelSet | None:
    """Called by the analysis job for every stored clip: return labels with time offsets, or None to pass.

    Only non-biometric analysis is possible: plugins declaring a biometric capability are never loaded.
    """


@hookspec
def consentcam_analysis_models() -> list[AnalysisModel]:
    """Called by ``consentcam models list`` and ``consentcam models fetch``: the model files your analyser needs.

    Return one ``AnalysisModel`` per file, with its ``fetch`` function, so that an operator obtains and verifies
    every model once and analysis needs no network afterwards; every plugin's models are listed.
    """


# --- places -------------------------------------------------------------------------------------------


@hookspec
async def consentcam_geocode(query: str, limit: int) -> list[GeocodedPlace] | None:
    """Called when someone types an address (the owner portal's "Find"): return up to ``limit`` places, best first.

    Declare the capability ``geocode`` so that the portal offers address search. Every plugin's answers are merged.
    The query is personal data (often the owner's home address): do not log it or keep it.
    """
