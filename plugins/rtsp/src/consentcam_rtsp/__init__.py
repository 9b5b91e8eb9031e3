"""ConsentCam's RTSP plugin: clips by time from RTSP recorders, and live-only RTSP cameras said to be so.

The entry point (group ``consentcam``) is ``consentcam_rtsp.plugin:plugin``. Concerns, one file each:
``const`` (names and defaults), ``templates`` (playback URLs per recorder family, time zones), ``masking``
(credentials in URLs and messages), ``puller`` (PyAV: open with timeouts, transport fallback, stream copy) and
``plugin`` (the hooks, where the recorder's failures become ConsentCam's errors).
"""

__version__ = "0.1.0"
