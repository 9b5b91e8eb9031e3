"""Names and defaults of the Ring export plugin."""

from __future__ import annotations

PLUGIN_NAME = "ring_export"
PROVIDER = "ring"           # the linked account's provider, and the camera connection's kind
CONNECTION_KIND = "ring"

# "link_account": owners link a Ring account (only its refresh token is kept); "fetch_recording": Ring events
# inside an approved window are downloaded into the vault.
CAPABILITIES = ("link_account", "fetch_recording")

# What the library sends as User-Agent and bases its device model on ("ring-doorbell:" + this).
USER_AGENT = "ConsentCam/0.1"

HISTORY_PAGE = 50           # events per history page (the library's default is 30)
HISTORY_MAX_PAGES = 200     # a bound on paging back: 10,000 events, far past any window a request may ask for
DOWNLOAD_TIMEOUT_S = 120    # the library's own default for one recording

ENV_PREFIX = "CONSENTCAM_RING_"
