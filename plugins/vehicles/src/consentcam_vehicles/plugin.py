"""The hooks of the vehicle analyser. The core calls ``consentcam_analyse_clip`` from its analysis job for every
stored clip; the work runs in a thread so the worker's event loop (and its lease heartbeat) keeps going."""

from __future__ import annotations

import asyncio
import logging

from consentcam import PluginError, hookimpl
from consentcam.hooktypes import AnalysisModel, ClipToAnalyse, LabelSet, ModelFile, PluginInfo

from . import __version__
from .analyse import Analyser, ModelMismatch
from .detector import ModelError
from .model import DEFAULT_NAME, DEFAULT_SHA256, ModelFetchError, fetch_default, fetch_from
from .sampling import UnreadableClip
from .settings import VehicleSettings

log = logging.getLogger(__name__)

PLUGIN_NAME = "vehicles"
# Vehicles and their colours, nothing else: no capability that could identify a person.
CAPABILITIES = ("analyse_objects", "analyse_vehicles", "vehicle_colour")


class VehiclesPlugin:
    name = PLUGIN_NAME

    def __init__(self, settings: VehicleSettings | None = None) -> None:
        self.settings = settings
        self._analyser: Analyser | None = None

    @property
    def analyser(self) -> Analyser:
        if self._analyser is None:
            self._analyser = Analyser(self.settings or VehicleSettings())
        return self._analyser

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo(PLUGIN_NAME, __version__, CAPABILITIES,
                          "vehicle classes (bicycle, car, motorcycle, bus, truck, train) and colours, offline YOLOX")

    @hookimpl
    def consentcam_analysis_models(self) -> list[AnalysisModel]:
        settings = self.settings or VehicleSettings()

        def fetch(source: str | None, sha256: str | None) -> ModelFile:
            try:
                got = (fetch_from(source, settings.model_path, sha256=sha256) if source
                       else fetch_default(settings.model_path))
            except ModelFetchError as exc:
                raise PluginError(str(exc)) from exc
            self._analyser = None  # the next clip loads the new file
            return ModelFile(got.path, got.sha256, got.size, got.source)

        return [AnalysisModel(PLUGIN_NAME, DEFAULT_NAME, settings.model_path,
                              (settings.model_sha256 or DEFAULT_SHA256).lower(), fetch)]

    @hookimpl
    async def consentcam_analyse_clip(self, clip: ClipToAnalyse) -> LabelSet | None:
        try:
            return await asyncio.to_thread(self.analyser.analyse, clip.path)
        except (ModelError, ModelMismatch) as exc:
            # The job retries with backoff: an operator who runs `consentcam-vehicles fetch-model` fixes it.
            raise PluginError(f"vehicle analysis has no usable model: {exc} (run `consentcam-vehicles fetch-model`)") from exc
        except UnreadableClip as exc:
            log.warning("evidence %s: %s", clip.evidence_id, exc)
            return None


plugin = VehiclesPlugin()
