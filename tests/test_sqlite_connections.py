"""The embedded default's SQLite file: WAL from the migration on, and a server's first connections never fail on
the journal-mode switch (CI once saw "database is locked" there when two engines opened a rollback-mode copy)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from consentcam.db import Database
from consentcam.db.migrate import upgrade
from sqlalchemy import text


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def test_a_migrated_database_is_already_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "cc.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    assert _journal_mode(path) == "wal"
    # WAL is in the file header: a byte-for-byte copy (as the test kit and a restore from backup make) keeps it.
    assert path.read_bytes()[18:20] == b"\x02\x02"


def test_a_rollback_mode_file_is_switched_once_a_reader_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (x)")
    setup.execute("INSERT INTO t VALUES (1)")
    setup.commit()
    setup.close()
    assert _journal_mode(path) == "delete"

    # Another process holds a read transaction (a shared lock) for a moment: the switch must wait it out, not fail.
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()
    threading.Timer(0.5, lambda: reader.execute("COMMIT")).start()

    async def open_both() -> list[int]:
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            async def one(engine) -> int:  # type: ignore[no-untyped-def]
                async with engine.connect() as conn:
                    return (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()

            return await asyncio.gather(one(db.engine), one(db.read_engine), one(db.read_engine))
        finally:
            await db.dispose()

    assert asyncio.run(open_both()) == [1, 1, 1]
    reader.close()
    assert _journal_mode(path) == "wal"
