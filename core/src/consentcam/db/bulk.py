"""Many rows in one INSERT ... SELECT: the fan-out of a large request writes ten thousand items in one statement.

An executemany sends and binds each row on its own (and SQLAlchemy runs every column's bind processing once
per row); here the columns that vary travel as one value each (PostgreSQL: arrays unpacked by ``unnest``;
SQLite: one JSON array read by ``json_each``) and the columns every row shares are bound once. No COPY, so it
runs inside the caller's transaction on both backends, through the same session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ARRAY, JSON, Integer, String, Table, Text, bindparam, cast, func, literal_column, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_rows(
    session: AsyncSession, table: Table, columns: Mapping[str, Sequence[Any]], shared: Mapping[str, Any] | None = None,
    *, skip_conflicts_on: str | None = None,
) -> int:
    """Insert ``len(column)`` rows: ``columns`` maps names to per-row values (strings, integers or None; any JSON
    value for a JSON column), ``shared`` maps names to one value for every row (bound with the column's own type).

    With ``skip_conflicts_on`` (a unique column), rows whose value is already taken, in the table or earlier in
    the same call, are left out. Returns how many rows were written."""
    shared = dict(shared or {})
    names = list(columns)
    if not names:
        raise ValueError("insert_rows needs at least one per-row column")
    count = len(columns[names[0]])
    if any(len(values) != count for values in columns.values()):
        raise ValueError("every per-row column needs one value per row")
    if count == 0:
        return 0
    json_columns = {n for n in names if isinstance(table.c[n].type, JSON)}
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    if dialect == "postgresql":
        arrays = []
        for name in names:
            values = columns[name]
            if name in json_columns:
                values, element = [json.dumps(v) for v in values], Text()
            else:
                element = Integer() if isinstance(table.c[name].type, Integer) else String()
            arrays.append(cast(bindparam(f"rows_{name}", list(values), type_=ARRAY(element)), ARRAY(element)))
        rows = func.unnest(*arrays).table_valued(*names).render_derived(name="new_rows")
        picked = [cast(rows.c[n], table.c[n].type) if n in json_columns else rows.c[n] for n in names]
        source = select(*picked, *(bindparam(f"shared_{n}", v, type_=table.c[n].type) for n, v in shared.items()))
        stmt: Any = postgresql.insert(table)
    else:
        payload = json.dumps([[json.dumps(v) if n in json_columns else v for n, v in zip(names, row, strict=True)]
                              for row in zip(*(columns[n] for n in names), strict=True)], separators=(",", ":"))
        each = func.json_each(bindparam("rows", payload, type_=Text)).table_valued("value").alias("new_rows")
        picked = [func.json_extract(each.c.value, literal_column(f"'$[{i}]'")) for i in range(len(names))]
        # "WHERE true": SQLite's documented way to keep an upsert's ON CONFLICT from being read as a join's ON.
        source = select(*picked, *(bindparam(f"shared_{n}", v, type_=table.c[n].type) for n, v in shared.items())).where(true())
        stmt = sqlite.insert(table)
    stmt = stmt.from_select([*names, *shared], source)
    if skip_conflicts_on is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=[skip_conflicts_on])
    result = await session.execute(stmt)
    return int(result.rowcount) if result.rowcount is not None and result.rowcount >= 0 else count


def random_ids(count: int) -> list[str]:
    """``count`` random UUIDs (version 4, as ``new_id``), from one read of the system's random source: a quarter of
    the cost of ``str(uuid.uuid4())`` each, which shows when a request asks ten thousand cameras."""
    raw = bytearray(os.urandom(16 * count))
    for i in range(6, 16 * count, 16):
        raw[i] = (raw[i] & 0x0F) | 0x40  # version 4
        raw[i + 2] = (raw[i + 2] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return [f"{h[j:j + 8]}-{h[j + 8:j + 12]}-{h[j + 12:j + 16]}-{h[j + 16:j + 20]}-{h[j + 20:j + 32]}"
            for j in range(0, 32 * count, 32)]
