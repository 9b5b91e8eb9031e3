"""Names and defaults of the ONVIF plugin."""

from __future__ import annotations

PLUGIN_NAME = "onvif"
CONNECTION_KIND = "onvif"

# "discover": WS-Discovery; "probe": device facts, profiles, stream URIs, services; "fetch_recording": clips by
# time from a device with the search and replay services (Profile G).
CAPABILITIES = ("discover", "probe", "fetch_recording")

DEFAULT_PORT = 80
DEFAULT_TIMEOUT_S = 10.0  # one SOAP call, connection included
DEFAULT_DISCOVERY_TIMEOUT_S = 3.0

# Namespaces of the services a device lists in GetServices (the library keys its XAddrs by them).
NS_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"
NS_RECORDING = "http://www.onvif.org/ver10/recording/wsdl"
NS_SEARCH = "http://www.onvif.org/ver10/search/wsdl"
NS_REPLAY = "http://www.onvif.org/ver10/replay/wsdl"
SERVICE_NAMES = {NS_RECORDING: "recording", NS_SEARCH: "search", NS_REPLAY: "replay"}

# How long a recording search may run on the device before it gives up (ONVIF KeepAliveTime), and how many
# recordings one search returns at most.
SEARCH_KEEP_ALIVE = "PT10S"
SEARCH_MAX_MATCHES = 50

# WS-Discovery (OASIS 1.1 with the 2005/04 namespace that ONVIF devices speak).
DISCOVERY_ADDRESS = "239.255.255.250"
DISCOVERY_PORT = 3702
DISCOVERY_MAX_DATAGRAM = 65_535
