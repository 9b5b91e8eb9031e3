"""The small, typed error hierarchy of ConsentCam.

Services and plugins raise these; the HTTP edge turns them into RFC 9457 problem responses, and nothing else
in the code knows about HTTP status codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBLEM_BASE = "https://consentcam.org/problems/"


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str

    def as_json(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg}


class ConsentCamError(Exception):
    """Base of every error ConsentCam raises on purpose."""

    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str = "", *, errors: list[FieldError] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.errors:
            body["errors"] = [e.as_json() for e in self.errors]
        body.update(self.extra)
        return body


class InvalidInput(ConsentCamError):
    status, slug, title = 422, "invalid-input", "Invalid input"

    @classmethod
    def at(cls, loc: tuple[str | int, ...] | str, msg: str) -> "InvalidInput":
        loc_t = (loc,) if isinstance(loc, str) else loc
        return cls(f"{'.'.join(map(str, loc_t))}: {msg}", errors=[FieldError(loc_t, msg)])


class MalformedBody(ConsentCamError):
    status, slug, title = 400, "malformed-body", "Malformed request body"


class Unauthorized(ConsentCamError):
    status, slug, title = 401, "unauthorized", "Not signed in"


class LoginFailed(Unauthorized):
    slug, title = "login-failed", "Login failed"


class Forbidden(ConsentCamError):
    status, slug, title = 403, "forbidden", "Forbidden"


class AgencySuspended(Forbidden):
    slug, title = "agency-suspended", "Agency suspended"


class ConsentRefused(Forbidden):
    """The owner's grant does not allow this; ``rule`` names the rule that refused it."""

    slug, title = "consent-refused", "Refused by the owner's consent"


class NotFound(ConsentCamError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ConsentCamError):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(ConsentCamError):
    status, slug, title = 410, "gone", "Gone"


class PayloadTooLarge(ConsentCamError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMedia(ConsentCamError):
    status, slug, title = 415, "unsupported-media", "Unsupported media"


class RangeNotSatisfiable(ConsentCamError):
    status, slug, title = 416, "range-not-satisfiable", "Range not satisfiable"


class TooManyRequests(ConsentCamError):
    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str = "", *, retry_after: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class DeviceUnreachable(ConsentCamError):
    status, slug, title = 502, "device-unreachable", "Device unreachable"


class CredentialsRejected(ConsentCamError):
    status, slug, title = 422, "credentials-rejected", "Credentials rejected by the device"


class ServiceUnavailable(ConsentCamError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


class PluginRefused(ConsentCamError):
    """A plugin was refused at load time (for example: it declares a biometric capability)."""

    slug, title = "plugin-refused", "Plugin refused"


class PluginError(ConsentCamError):
    """A plugin failed in a way it reported; the job or request fails with its message."""

    status, slug, title = 502, "plugin-error", "Plugin error"
