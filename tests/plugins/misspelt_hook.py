"""A plugin whose notification hook is misspelt: the host must say so instead of never calling it."""

from consentcam import hookimpl
from consentcam.hooktypes import DeliveryResult, PluginInfo


@hookimpl
def consentcam_plugin_info() -> PluginInfo:
    return PluginInfo("pager-channel", "0.1", ("notify_sms",))


@hookimpl
async def consentcam_notfy_owner(notification):  # noqa: ANN001, ANN201
    return DeliveryResult("pager", True)
