"""A plugin that cannot even be imported."""

import consentcam_no_such_vendor_sdk  # noqa: F401
