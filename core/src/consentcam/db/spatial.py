"""DDL of the spatial index on camera locations, one per backend, shared by the migrations.

SQLite: an R*Tree virtual table kept in step by triggers. PostgreSQL: a PostGIS point column (generated from
lat/lon) with a GiST index when the extension is available, otherwise a GiST index on the built-in point type.
A migration that rebuilds the ``cameras`` table on SQLite (batch mode) must call ``create_sqlite_rtree`` again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

SQLITE_RTREE = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS camera_rtree USING rtree(seq, min_lon, max_lon, min_lat, max_lat)",
    "DROP TRIGGER IF EXISTS cameras_rtree_insert",
    "DROP TRIGGER IF EXISTS cameras_rtree_update",
    "DROP TRIGGER IF EXISTS cameras_rtree_delete",
    """CREATE TRIGGER cameras_rtree_insert AFTER INSERT ON cameras BEGIN
         INSERT INTO camera_rtree VALUES (NEW.seq, NEW.lon, NEW.lon, NEW.lat, NEW.lat); END""",
    """CREATE TRIGGER cameras_rtree_update AFTER UPDATE OF lat, lon ON cameras BEGIN
         UPDATE camera_rtree SET min_lon = NEW.lon, max_lon = NEW.lon, min_lat = NEW.lat, max_lat = NEW.lat
         WHERE seq = NEW.seq; END""",
    """CREATE TRIGGER cameras_rtree_delete AFTER DELETE ON cameras BEGIN
         DELETE FROM camera_rtree WHERE seq = OLD.seq; END""",
    "INSERT OR REPLACE INTO camera_rtree SELECT seq, lon, lon, lat, lat FROM cameras",
]


def create_sqlite_rtree(op: Any) -> None:
    for statement in SQLITE_RTREE:
        op.execute(statement)


def create_postgres_index(op: Any) -> str:
    bind = op.get_bind()
    installed = bind.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")).first()
    available = bind.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")).first()
    if installed or available:
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        op.execute(
            "ALTER TABLE cameras ADD COLUMN geom geometry(Point, 4326) "
            "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED"
        )
        op.execute("CREATE INDEX ix_cameras_geom ON cameras USING gist (geom)")
        return "postgis"
    op.execute("CREATE INDEX ix_cameras_point ON cameras USING gist (point(lon, lat))")
    return "pg_point"


def create_spatial_index(op: Any) -> str:
    if op.get_bind().dialect.name == "sqlite":
        create_sqlite_rtree(op)
        return "rtree"
    return create_postgres_index(op)


def drop_spatial_index(op: Any) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS cameras_rtree_{trigger}")
        op.execute("DROP TABLE IF EXISTS camera_rtree")
    else:
        op.execute("DROP INDEX IF EXISTS ix_cameras_geom")
        op.execute("DROP INDEX IF EXISTS ix_cameras_point")
        op.execute("ALTER TABLE cameras DROP COLUMN IF EXISTS geom")
