"""Alembic environment: metadata from the one declarative base, one transaction per migration,
and on PostgreSQL a session lock so that two processes starting together do not both migrate."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from consentcam.db.models import Base

MIGRATION_LOCK_KEY = 0x6D696772  # "migr"

config = context.config
target_metadata = Base.metadata


def _include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001
    # The spatial index is hand-written DDL (consentcam.db.spatial), invisible to the ORM metadata.
    if name and (name.startswith("camera_rtree") or name in {"geom", "ix_cameras_geom", "ix_cameras_point"}):
        return False
    return not (type_ == "table" and name and name.startswith("spatial_ref_sys"))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        compare_server_default=True,
        transaction_per_migration=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def _run_sync(connection: Connection) -> None:
    postgres = connection.dialect.name == "postgresql"
    if connection.dialect.name == "sqlite":
        # WAL is a property of the file: set it once, here, before any server opens the database. Left to the first
        # connections of a server, the switch needs an exclusive lock and races their readers.
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        connection.commit()
    if postgres:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()


async def _run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = async_engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
    await engine.dispose()


def _run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(_run_online())
