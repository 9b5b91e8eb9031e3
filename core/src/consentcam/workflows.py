"""Importing this module registers every job handler of the core (notifications, fetches, analysis, exports)."""

from __future__ import annotations

from typing import Any

from . import notify  # noqa: F401
from .platform import Platform


async def maintenance(p: Platform) -> dict[str, Any]:
    """Periodic upkeep run by every worker: record expired links and lapsed grants."""
    from .services.requests import sweep

    return await sweep(p)


def make_worker(p: Platform, name: str | None = None, **options: Any) -> Any:
    from .jobs import Worker

    return Worker(p, name, maintenance=maintenance, **options)
