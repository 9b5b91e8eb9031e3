"""ConsentCam: consent-first access to privately owned security cameras.

Plugins import what they need from here only: ``hookimpl``, the error classes and the hook models.
"""

from .errors import (
    ConsentCamError,
    ConsentRefused,
    CredentialsRejected,
    DeviceUnreachable,
    InvalidInput,
    NotFound,
    PluginError,
    PluginRefused,
)
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "ConsentCamError",
    "ConsentRefused",
    "CredentialsRejected",
    "DeviceUnreachable",
    "InvalidInput",
    "NotFound",
    "PluginError",
    "PluginRefused",
    "__version__",
    "hookimpl",
]
