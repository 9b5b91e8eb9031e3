"""A plugin that declares face recognition: it must never be loaded, so its analyser must never run."""

from consentcam import hookimpl
from consentcam.hooktypes import Label, LabelSet, PluginInfo

CALLS: list[str] = []


@hookimpl
def consentcam_plugin_info() -> PluginInfo:
    return PluginInfo("face-finder", "1.0", ("analyse_objects", "face_recognition"), "finds who is in a clip")


@hookimpl
async def consentcam_analyse_clip(clip):  # noqa: ANN001, ANN201
    CALLS.append(clip.evidence_id)
    return LabelSet("face-finder", "0" * 64, [Label("person:alice", 0.0, 1.0, 0.99)])
