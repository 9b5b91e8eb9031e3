"""One SELECT, one driver call, for the read paths where SQLAlchemy's execution layer costs as much as the query.

SQLAlchemy still builds and compiles the statement (once per dialect, with the same SQL, casts and bind processing
that ``session.execute`` would use). Each call then hands the driver the SQL text and the processed values: one
``execute_fetchall`` on aiosqlite (one hop to its thread, where ``session.execute`` makes four: cursor, execute,
fetchall, close) or one ``fetch`` on asyncpg. At a million cameras a geo-fence match went from about 2.2 to
about 1.0 ms this way (bench/match_bench.py), as fast as the bare spatial-index query sent the same way.

It runs on the session's own connection and inside its transaction. On SQLite the transaction has begun when the
connection is taken (``BEGIN`` is sent from the engine's begin event). On PostgreSQL SQLAlchemy's asyncpg adapter
sends ``BEGIN`` with the first statement, so a connection whose transaction has not started yet goes through
SQLAlchemy instead, which starts it: the query never runs outside the caller's transaction.

Rows come back as the driver gives them (tuples or asyncpg records; SQLite booleans as 0/1). No result types are
applied: a caller uses this for plain columns only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters in the order the driver takes them
    known: frozenset[str]  # the same, as a set: checked on every call
    defaults: Mapping[str, Any]  # values fixed in the statement (literal binds such as 'active')
    processors: Mapping[str, Callable[[Any], Any]]


class DirectQuery:
    """A SELECT compiled once per dialect and run with a single driver call (see the module's docstring)."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Any) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is not None:
            return found
        compiled = self.statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string or compiled.positiontup is None:
            raise TypeError("DirectQuery needs a statement whose parameters are all plain, positional binds")
        processors = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        defaults = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        names = tuple(compiled.positiontup)
        found = _Compiled(compiled.string, names, frozenset(names), defaults, processors)
        self._compiled[dialect.name] = found
        return found

    def arguments(self, dialect: Any, params: Mapping[str, Any]) -> tuple[_Compiled, list[Any]]:
        compiled = self.compiled(dialect)
        unknown = params.keys() - compiled.known
        if unknown:
            raise TypeError(f"unknown parameters: {sorted(unknown)}")
        values = []
        for name in compiled.names:
            if name in params:
                value = params[name]
            elif name in compiled.defaults:
                value = compiled.defaults[name]
            else:
                raise TypeError(f"missing parameter {name!r}")
            processor = compiled.processors.get(name)
            values.append(processor(value) if processor is not None else value)
        return compiled, values

    async def rows(self, session: AsyncSession, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        return await self.rows_on(await session.connection(), params)

    async def rows_on(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        compiled, values = self.arguments(conn.dialect, params)
        fairy = await conn.get_raw_connection()
        adapted, driver = fairy.dbapi_connection, fairy.driver_connection
        if conn.dialect.name == "sqlite":
            call = driver.execute_fetchall(compiled.sql, values)
        elif conn.dialect.driver == "asyncpg" and _transaction_settled(conn, adapted):
            call = driver.fetch(compiled.sql, *values)
        else:  # let SQLAlchemy send BEGIN first (or run a driver this module does not know)
            return (await conn.exec_driver_sql(compiled.sql, tuple(values))).all()
        try:
            return await call  # type: ignore[no-any-return]
        except Exception as exc:
            from . import database_unavailable

            if database_unavailable(exc):  # as SQLAlchemy would: this connection is not handed out again
                await conn.invalidate(exc)
            raise


def _transaction_settled(conn: AsyncConnection, adapted: Any) -> bool:
    """Whether a statement sent straight to asyncpg runs where SQLAlchemy's would: in autocommit, or inside a
    transaction whose BEGIN the adapter has already sent. Unknown (an adapter without the attribute): no."""
    if conn.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return True
    return getattr(adapted, "_transaction", None) is not None
