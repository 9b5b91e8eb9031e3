"""The evidence vault: streamed, resumable uploads into a content-addressed store; the media check; custody
events in the audit chain; reads with ranges; search; signed export packages; retention and legal hold.

See ``docs/vault.md``. The store is a local folder by default (``<data_dir>/evidence``) or an S3-compatible
bucket with object lock (``CONSENTCAM_VAULT_BACKEND=s3``). This package imports nothing heavy by itself, so that
the media check's child process (``python -m consentcam.vault.media``) starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Vault, use_storage, vault_for

__all__ = ["Vault", "startup", "upkeep", "use_storage", "vault_for"]


def __getattr__(name: str) -> Any:
    if name in ("Vault", "use_storage", "vault_for"):
        from . import core

        return getattr(core, name)
    raise AttributeError(name)


async def startup(platform: Any) -> dict[str, int]:
    """Run once when a core process starts: put the vault back in a consistent state after a crash, and start
    the media checker's child so that the first upload does not wait for it."""
    import threading

    from . import media
    from .ingest import Uploads

    threading.Thread(target=media.warm, name="media-check warm-up", daemon=True).start()
    return await Uploads(platform).recover()


async def upkeep(platform: Any) -> dict[str, int]:
    """Periodic, from every worker: dispose of clips past retention; drop uploads through links that died."""
    from .ingest import Uploads
    from .retention import dispose_due

    return {"disposed": await dispose_due(platform), "uploads_abandoned": await Uploads(platform).sweep_abandoned()}
