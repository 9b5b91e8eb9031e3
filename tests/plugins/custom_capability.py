"""A well-behaved plugin with a custom capability ('x-...') and one hook, to show what loading looks like."""

from consentcam import hookimpl
from consentcam.hooktypes import DeliveryResult, PluginInfo

SENT: list[str] = []


@hookimpl
def consentcam_plugin_info() -> PluginInfo:
    return PluginInfo("carrier-pigeon", "2.0", ("notify_sms", "x-carrier-pigeon"), "delivers by pigeon")


@hookimpl
async def consentcam_notify_owner(notification):  # noqa: ANN001, ANN201
    SENT.append(notification.owner_id)
    return DeliveryResult("pigeon", True, "released")
