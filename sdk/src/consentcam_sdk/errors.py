"""Errors: every problem response (RFC 9457) becomes a ``ProblemError`` of the class for its status."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ConsentCamError(Exception):
    """Base of everything this SDK raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str


class ProblemError(ConsentCamError):
    """The server refused: ``type``, ``title``, ``status``, ``detail``, validation ``errors``, and any ``extra``."""

    def __init__(self, status: int, type: str = "about:blank", title: str = "", detail: str = "",
                 errors: list[FieldError] | None = None, extra: dict[str, Any] | None = None) -> None:
        self.status, self.type, self.title, self.detail = status, type, title, detail
        self.errors = errors or []
        self.extra = extra or {}
        super().__init__(f"{status} {title or type}: {detail}".rstrip(": "))


class BadRequest(ProblemError): ...
class Unauthorized(ProblemError): ...
class Forbidden(ProblemError): ...
class NotFound(ProblemError): ...
class Conflict(ProblemError): ...
class Gone(ProblemError): ...
class PayloadTooLarge(ProblemError): ...
class InvalidInput(ProblemError): ...
class TooManyRequests(ProblemError): ...
class ServiceUnavailable(ProblemError): ...


BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone,
    413: PayloadTooLarge, 422: InvalidInput, 429: TooManyRequests, 503: ServiceUnavailable,
}


class IntegrityError(ConsentCamError):
    """Bytes do not match the hash (or signature) they were promised with: treat them as tampered."""


def problem_from(status: int, body: bytes, reason: str = "") -> ProblemError:
    """The typed error for a failed response; a body that is not a problem document still yields one."""
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    errors = [FieldError(tuple(e.get("loc") or ()), str(e.get("msg", ""))) for e in doc.get("errors") or []
              if isinstance(e, dict)]
    known = {"type", "title", "status", "detail", "errors"}
    cls = BY_STATUS.get(status, ProblemError)
    return cls(status, str(doc.get("type", "about:blank")), str(doc.get("title", reason)),
               str(doc.get("detail", "" if doc else body[:500].decode(errors="replace"))), errors,
               {k: v for k, v in doc.items() if k not in known})
