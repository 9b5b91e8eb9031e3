"""Python client for the ConsentCam HTTP API, version 1. Standalone: aiohttp and pydantic, nothing of the server."""

from . import models
from .client import AsyncClient, Progress
from .errors import (
    BadRequest,
    Conflict,
    ConsentCamError,
    FieldError,
    Forbidden,
    Gone,
    IntegrityError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from .exports import ExportVerification, verify_package
from .sync import Client

__version__ = "0.1.0"
__all__ = [
    "AsyncClient", "BadRequest", "Client", "Conflict", "ConsentCamError", "ExportVerification", "FieldError",
    "Forbidden", "Gone", "IntegrityError", "InvalidInput", "NotFound", "PayloadTooLarge", "ProblemError", "Progress",
    "ServiceUnavailable", "TooManyRequests", "Unauthorized", "models", "verify_package",
]
