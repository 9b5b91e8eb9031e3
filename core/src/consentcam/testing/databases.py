"""Throwaway databases for tests, on both backends, each test in its own database so runs cannot collide.

PostgreSQL: one template database per test process, migrated once, then ``CREATE DATABASE ... TEMPLATE`` per
test (tens of milliseconds). SQLite: one migrated file per process, copied per test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg

from ..db.migrate import upgrade

PG_ADMIN_URL = os.environ.get("CONSENTCAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _async_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class PostgresDatabases:
    def __init__(self) -> None:
        self.prefix = f"cc_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.template = f"{self.prefix}_tpl"
        self.created: list[str] = []
        self._ready = False

    def _ensure_template(self) -> None:
        if self._ready:
            return
        try:
            # A template left by an earlier attempt whose migration failed is half-migrated: start again.
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'))
            asyncio.run(_admin(f'CREATE DATABASE "{self.template}"'))
        except (OSError, asyncpg.PostgresError) as exc:
            raise RuntimeError(
                f"PostgreSQL is required by this test and failed at {PG_ADMIN_URL}: {exc}. "
                "Start it (see .ci/run) or set CONSENTCAM_TEST_PG."
            ) from exc
        if self.template not in self.created:
            self.created.append(self.template)
        upgrade(_async_url(self.template))
        self._ready = True

    def new(self) -> str:
        self._ensure_template()
        name = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        self.created.append(name)
        return _async_url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            try:
                asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception:  # best effort at teardown
                pass
        self.created.clear()


class SqliteDatabases:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.template = folder / "template.sqlite3"
        self._ready = False

    def new(self, target_dir: Path) -> str:
        if not self._ready:
            self.folder.mkdir(parents=True, exist_ok=True)
            upgrade(f"sqlite+aiosqlite:///{self.template}")
            self._ready = True
        target_dir.mkdir(parents=True, exist_ok=True)
        path = target_dir / "consentcam.sqlite3"
        shutil.copyfile(self.template, path)
        return f"sqlite+aiosqlite:///{path}"
