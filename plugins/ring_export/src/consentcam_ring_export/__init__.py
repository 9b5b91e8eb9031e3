"""ConsentCam's Ring export plugin: owners link a Ring account; approved direct fetches download the Ring events
whose recordings start inside the asked window.

The entry point (group ``consentcam``) is ``consentcam_ring_export.plugin:plugin``. Concerns, one file each:
``const`` (names and defaults), ``account`` (the ring-doorbell library over our aiohttp session, and the
rotating refresh token), ``history`` (paging back through a device's events, which of them fall in the window,
what part of the window none covers) and ``plugin`` (the hooks, where Ring's failures become ConsentCam's errors).
"""

__version__ = "0.1.0"
