"""Credentials in RTSP URLs: added only to the URL handed to FFmpeg, masked everywhere else.

FFmpeg reads RTSP credentials only from the URL's userinfo, and PyAV puts the URL it opened into every error
message. So the URL with credentials exists in one place (the call to ``av.open``), and every message, log line,
exception and provenance record is built from the URL without them or passed through ``scrub``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit, urlunsplit

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s@]*)@")


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``url`` with userinfo for FFmpeg, each part percent-encoded (FFmpeg decodes it: ':', '@', '/' and '%' pass)."""
    if not username and not password:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = quote(username or "", safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def mask_url(url: str) -> str:
    """``rtsp://user:pass@host/...`` -> ``rtsp://***@host/...``; a URL without userinfo is unchanged."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", url)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every URL's userinfo masked and every secret (as is, and percent-encoded) replaced."""
    text = mask_url(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, MASK)
    return text
