"""A plugin declaring a capability ConsentCam does not know and that is not marked custom ('x-...')."""

from consentcam import hookimpl
from consentcam.hooktypes import PluginInfo


@hookimpl
def consentcam_plugin_info() -> PluginInfo:
    return PluginInfo("teleporter", "0.1", ("probe", "teleportation"))
