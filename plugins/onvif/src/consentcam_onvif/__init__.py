"""ConsentCam's ONVIF plugin, the reference adapter for vendors: discover cameras, probe them, fetch recordings by time.

The entry point (group ``consentcam``) is ``consentcam_onvif.plugin:plugin``. Concerns, one file each:
``const`` (names and defaults), ``models`` (plain dataclasses), ``device`` (the one class that talks to
``onvif-zeep-async``, where its exceptions become ConsentCam's errors), ``discovery`` (WS-Discovery, tolerant of
malformed replies), ``replay`` (which part of a window a recording covers, and the RTSP pull of it),
``replay_proxy`` (the local RTSP proxy that positions a replay by ONVIF's absolute clock range) and ``plugin`` (the
hooks).
"""

__version__ = "0.1.0"
