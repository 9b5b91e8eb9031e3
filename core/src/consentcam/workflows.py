"""Importing this module registers every job handler of the core (notifications, fetches, analysis, exports)."""

from __future__ import annotations

from typing import Any

from . import fetching, notify  # noqa: F401
from .live import service as _live  # noqa: F401 - notify.live
from .platform import Platform
from .vault import handlers as _vault_handlers  # noqa: F401 - evidence.stored, export.ready, disposal, legal holds
from .vault import labels as _vault_labels  # noqa: F401 - evidence.analyse


async def maintenance(p: Platform) -> dict[str, Any]:
    """Periodic upkeep run by every worker: record expired links and lapsed grants; the vault's retention."""
    from .services.requests import sweep
    from .vault import upkeep

    result = await sweep(p)
    result.update(await upkeep(p))
    return result


def make_worker(p: Platform, name: str | None = None, **options: Any) -> Any:
    from .jobs import Worker

    return Worker(p, name, maintenance=maintenance, **options)
