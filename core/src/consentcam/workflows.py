"""Importing this module registers every job handler of the core (notifications, fetches, analysis, exports)."""

from . import jobs  # noqa: F401
