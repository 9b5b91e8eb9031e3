"""Engine, sessions and the few places where SQLite and PostgreSQL must be treated differently."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from ..errors import ServiceUnavailable
from .models import Base

__all__ = ["Base", "Database"]

AUDIT_LOCK_KEY = 0x636F6E73  # "cons": the advisory lock that serialises the audit chain on PostgreSQL


def _switch_to_wal(cursor: Any, seconds: float = 30.0) -> None:
    """Switch a rollback-journal SQLite file to WAL. The switch needs the file to itself, and a reader that holds it
    open may itself be waiting on this connection, so try briefly and often instead of one long busy wait."""
    cursor.execute("PRAGMA busy_timeout=50")
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        cursor.execute("PRAGMA busy_timeout=30000")


# Each connection's page cache (SQLite's default is 2 MiB). A 2 km² fence over a million cameras reads about a
# thousand camera rows scattered through the table; with 2 MiB they no longer fit and every match re-read them
# from the OS: 32 MiB made the match and the bare index query about twice as fast (bench/match_bench.py). It fills
# only as pages are read, so a small city's connections stay small.
SQLITE_CACHE_KIB = 32 * 1024


def _make_engine(url: str, *, immediate: bool = True, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take SQLite's transaction handling away from the driver so that BEGIN IMMEDIATE below is ours.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            # Migrations leave the file in WAL mode; only a database made some other way is switched here, and the
            # switch (it needs the file to itself) is retried rather than failing a connection that merely raced it.
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                _switch_to_wal(cursor)
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Writers queue at BEGIN instead of failing on a lock upgrade half way through a transaction;
            # this also serialises the audit chain, as PostgreSQL's advisory lock does there. Readers take
            # no lock (WAL): a read left open never holds up a writer.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


IDLE_PING_S = 2.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only when it sat idle for a while.

    ``pool_pre_ping`` pings on every checkout: a round trip that was a third of a typical read's time. A connection
    used moments ago is very likely alive; if the server went away in between (a restart, a failover), the failing
    statement invalidates the whole pool, that one call answers 503 "try again" (``database_unavailable``) and
    the next calls reconnect. A connection idle for longer is pinged, and replaced if dead, as pre-ping would."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("used_at", 0.0) < IDLE_PING_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool drops this connection and checks out (or opens) another
            raise DisconnectionError(f"an idle database connection was dead: {exc}") from exc

    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()


class ReadSession(Session):
    """The session behind ``Database.sessions()``: it reads. A change flushed through it is a bug (on PostgreSQL, in
    autocommit, it would even be kept), so it is refused loudly instead."""


@event.listens_for(ReadSession, "before_flush")
def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.deleted or any(session.is_modified(obj) for obj in session.dirty):
        raise RuntimeError("a read session was asked to write; use Database.transaction() for changes")


class Database:
    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = _make_engine(url, **engine_kwargs)
        # On SQLite, reads go through their own engine whose transactions are deferred (no write lock), so a read
        # sees one snapshot throughout. On PostgreSQL reads share the writers' pool in autocommit: at READ COMMITTED
        # every statement takes its own snapshot inside a transaction too, so nothing is lost, and a read costs one
        # round trip instead of four (pre-ping with its own BEGIN/ROLLBACK, BEGIN, the query, ROLLBACK).
        if url.startswith("sqlite"):
            self.read_engine = _make_engine(url, immediate=False, **engine_kwargs)
        else:
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sessions = async_sessionmaker(self.read_engine, expire_on_commit=False, sync_session_class=ReadSession)
        self._writers = async_sessionmaker(self.engine, expire_on_commit=False)
        self.dialect = self.engine.dialect.name
        self.spatial: str = "rtree" if self.is_sqlite else "unknown"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def detect_spatial(self) -> str:
        """Which spatial index the migrated schema carries: rtree, postgis or pg_point."""
        if self.is_sqlite:
            self.spatial = "rtree"
            return self.spatial
        async with self.engine.connect() as conn:
            has_postgis = (
                await conn.execute(
                    text(
                        "SELECT 1 FROM information_schema.columns "
                        "WHERE table_name = 'cameras' AND column_name = 'geom' AND table_schema = current_schema()"
                    )
                )
            ).first()
        self.spatial = "postgis" if has_postgis else "pg_point"
        return self.spatial

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work that writes; database unavailability becomes a retryable domain error.
        Use ``sessions()`` for reads, and never write while one is open on SQLite."""
        try:
            async with self._writers() as session, session.begin():
                yield session
        except (OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            if isinstance(exc, DBAPIError) and not _is_unavailable(exc):
                raise
            raise ServiceUnavailable(
                "The database is not reachable right now; the request changed nothing. Try again shortly.",
                retry_after=5,
            ) from exc

    async def lock_audit_chain(self, session: AsyncSession) -> None:
        if not self.is_sqlite:
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.is_sqlite:  # on PostgreSQL the read engine shares the writers' pool
            await self.read_engine.dispose()


def database_unavailable(exc: BaseException) -> bool:
    """Whether an error (or one it was raised from) says the database cannot be reached right now: a dropped or
    refused connection, a server shutting down or starting up. Anything else is a real failure."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, DBAPIError) and _is_unavailable(seen):
            return True
        # SQLAlchemy re-raises a refused connect as the driver's bare OSError ("Connect call failed"); a connection
        # reset in a restart comes up as a bare ConnectionResetError from the driver's socket.
        if isinstance(seen, ConnectionRefusedError):
            return True
        if isinstance(seen, ConnectionError) and _raised_in_driver(seen):
            return True
        module = type(seen).__module__
        name = type(seen).__name__
        if module.startswith("asyncpg") and name in {
                "ConnectionDoesNotExistError", "CannotConnectNowError", "AdminShutdownError", "ConnectionFailureError"}:
            return True
        # asyncpg's InterfaceError is also its "you used me wrong" (an operation already in progress): only a closed
        # connection is the database being away.
        if module.startswith("asyncpg") and name == "InterfaceError" and "connection" in str(seen).lower() \
                and "closed" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _raised_in_driver(exc: BaseException) -> bool:
    """Raised from the database driver's own code (not, say, from an S3 or webhook call, or the HTTP client)."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(("asyncpg", "aiosqlite", "sqlalchemy")):
            return True
        tb = tb.tb_next
    return False


def _is_unavailable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    message = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(
        marker in message
        for marker in (
            "connection",
            "could not connect",
            "terminating",
            "shutting down",
            "starting up",
            "database is locked",
            "cannot connect",
        )
    )
