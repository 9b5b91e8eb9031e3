"""A plugin that implements a hook but never says who it is or what it can do."""

from consentcam import hookimpl


@hookimpl
async def consentcam_notify_owner(notification):  # noqa: ANN001, ANN201
    return None
