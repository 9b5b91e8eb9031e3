"""Names and defaults of the RTSP plugin."""

from __future__ import annotations

PLUGIN_NAME = "rtsp"
CONNECTION_KIND = "rtsp"

# "probe": reads a stream's codec and size; "fetch_recording": clips by time from recorders with a playback
# template; "live_only": says plainly which cameras cannot answer for the past, so those requests go to the owner.
CAPABILITIES = ("probe", "fetch_recording", "live_only")

# Transports in the order tried: TCP (interleaved) passes NAT and firewalls and loses nothing; UDP is the
# fallback for cameras and relays that refuse TCP.
TRANSPORTS = ("tcp", "udp")

DEFAULT_OPEN_TIMEOUT_S = 10.0   # TCP connect and the RTSP exchange up to PLAY
DEFAULT_READ_TIMEOUT_S = 10.0   # no packet for this long: the stream stalled
DEFAULT_ATTEMPTS = 3            # per fetch: openings (each tries every transport), and resumptions of a cut stream
DEFAULT_BACKOFF_S = 1.0         # doubled after each failed attempt, up to DEFAULT_BACKOFF_MAX_S
DEFAULT_BACKOFF_MAX_S = 8.0
# A recorder plays in real time; a pull that takes this many times the window's length (plus the open timeout)
# is abandoned as stalled.
DEFAULT_SLOWNESS = 3.0

ENV_PREFIX = "CONSENTCAM_RTSP_"  # e.g. CONSENTCAM_RTSP_OPEN_TIMEOUT_S=5 for the plugin object the entry point loads
