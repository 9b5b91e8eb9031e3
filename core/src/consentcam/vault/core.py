"""The vault of one platform: its store, its folders, and what one process remembers between chunks."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..platform import Platform
from .config import VaultSettings, storage_from
from .storage import Storage


class HasherCache:
    """SHA-256 states of interrupted uploads, so a resume on the same process hashes nothing twice. After a
    restart (or on another process) the received prefix is hashed again from the file instead."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._states: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> Any | None:
        state = self._states.pop(upload_id, None)
        if state is None or state[0] != offset:
            return None
        return state[1]

    def keep(self, upload_id: str, offset: int, hasher: Any) -> None:
        self._states[upload_id] = (offset, hasher)
        self._states.move_to_end(upload_id)
        while len(self._states) > self.size:
            self._states.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)


class Vault:
    def __init__(self, platform: Platform, storage: Storage | None = None) -> None:
        self.p = platform
        self.config = VaultSettings.of(platform.settings)
        self.storage = storage or storage_from(platform.settings, self.config)
        self.upload_dir: Path = platform.settings.data_dir / "uploads"
        self.export_dir: Path = platform.settings.data_dir / "exports"
        self.hashers = HasherCache()

    def new_hasher(self) -> Any:
        return hashlib.sha256()


_ATTRIBUTE = "_consentcam_vault"


def vault_for(platform: Platform) -> Vault:
    """The platform's vault, made on first use from its settings."""
    found = platform.__dict__.get(_ATTRIBUTE)
    if found is None:
        found = Vault(platform)
        setattr(platform, _ATTRIBUTE, found)
    return found


async def close_vault(platform: Platform) -> None:
    """Release what the platform's vault holds for the running event loop (its S3 client, if any)."""
    found = platform.__dict__.get(_ATTRIBUTE)
    if found is not None:
        await found.storage.close()


def use_storage(platform: Platform, storage: Storage) -> Vault:
    """Give a platform another store (tests; an operator's own factory)."""
    vault = Vault(platform, storage)
    setattr(platform, _ATTRIBUTE, vault)
    return vault
