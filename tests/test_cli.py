"""The `consentcam` command line, which city admins script: run in-process with click's runner against a real
database, and checked over real HTTP where it matters (a created user logs in, a suspended agency is refused)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result
from consentcam.cli import main
from consentcam.settings import Settings
from consentcam.testing.world import square

pytestmark = pytest.mark.usefixtures("fast_passwords")

POLYGON = square(-87.63, 41.88, 0.02)
FORMS = {
    "Polygon": POLYGON,
    "Feature": {"type": "Feature", "properties": {"name": "Loop"}, "geometry": POLYGON},
    "FeatureCollection of one": {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": POLYGON}]},
    "MultiPolygon": {"type": "MultiPolygon", "coordinates": [POLYGON["coordinates"],
                                                             square(-87.53, 41.88, 0.01)["coordinates"]]},
}


class Cli:
    """`consentcam` with a deployment of its own: environment, data folder and database."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp = tmp_path
        self.database_url = database_url
        self.env = {
            "CONSENTCAM_DATA_DIR": str(tmp_path / "data"),
            "CONSENTCAM_DATABASE_URL": database_url,
            "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "false",
            "CONSENTCAM_RUN_JOBS_IN_PROCESS": "false",
        }
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(main, list(args), env=self.env)

    def json(self, *args: str) -> dict[str, Any]:
        result = self(*args, "--json")
        assert result.exit_code == 0, (args, result.output, result.exception)
        return json.loads(result.stdout)

    def fails(self, *args: str, code: int = 1) -> str:
        result = self(*args)
        assert result.exit_code == code, (args, result.output)
        assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
        assert "Traceback" not in result.output
        return result.output

    def file(self, name: str, content: Any) -> str:
        path = self.tmp / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    def agency(self, name: str = "Metro PD", geojson: Any = POLYGON) -> str:
        return self.json("admin", "create-agency", name, "--jurisdiction", self.file(f"{name}.geojson", geojson))["id"]

    def http(self, fn: Callable[[TestClient], Awaitable[Any]]) -> Any:
        """Run ``fn`` with a client on a server over the same deployment."""
        from consentcam.http.app import create_app

        settings = Settings(_env_file=None, data_dir=self.tmp / "data", database_url=self.database_url,  # type: ignore[call-arg]
                            load_entry_point_plugins=False, run_jobs_in_process=False)

        async def go() -> Any:
            async with TestClient(TestServer(create_app(settings, run_jobs=False))) as client:
                return await fn(client)

        return asyncio.run(go())


async def login(client: TestClient, email: str, password: str) -> dict[str, str]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['token']}"}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)  # no stray .env of the developer's
    return Cli(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'consentcam.sqlite3'}")


@pytest.fixture
def migrated(cli: Cli) -> Cli:
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    return cli


def agencies(cli: Cli) -> list[tuple[str, str]]:
    with sqlite3.connect(cli.tmp / "consentcam.sqlite3") as db:
        return [(row[0], json.loads(row[1])["type"]) for row in db.execute("SELECT name, jurisdiction FROM agencies")]


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:", 1)[1].split()
    for command in ("serve", "worker", "db", "demo", "admin", "plugins"):
        assert command in commands, command
    admin = cli("admin", "--help").output
    for command in ("create-agency", "create-user", "suspend-agency", "resume-agency"):
        assert command in admin


def test_db_upgrade_creates_the_schema_and_is_repeatable(cli):
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "upgrade").exit_code == 0
    with sqlite3.connect(cli.tmp / "consentcam.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agencies", "users", "cameras", "grant_versions", "audit_events", "alembic_version"} <= tables


def test_create_agency_accepts_every_documented_form(migrated):
    ids = {form: migrated.agency(f"PD {form}", geojson) for form, geojson in FORMS.items()}
    assert len(set(ids.values())) == 4
    assert sorted(agencies(migrated)) == sorted([
        ("PD Polygon", "Polygon"), ("PD Feature", "Polygon"), ("PD FeatureCollection of one", "Polygon"),
        ("PD MultiPolygon", "MultiPolygon")])
    plain = migrated("admin", "create-agency", "Plain PD", "--jurisdiction", migrated.file("plain.json", POLYGON))
    assert plain.exit_code == 0 and len(plain.stdout.strip()) == 36  # without --json: just the id


BOW_TIE = {"type": "Polygon", "coordinates": [[[-87.64, 41.87], [-87.62, 41.89], [-87.62, 41.87], [-87.64, 41.89],
                                              [-87.64, 41.87]]]}
BAD_FILES = [
    ("{not json", "not JSON"),
    ("[1, 2, 3]", "jurisdiction"),
    ({"type": "Point", "coordinates": [-87.63, 41.88]}, "Polygon"),
    (BOW_TIE, "cross each other at longitude -87.630000, latitude 41.880000"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": POLYGON}] * 2}, "exactly one"),
    ({"type": "Polygon", "coordinates": [[[-87.64, 41.87], [-87.62, 41.87], [-87.62, 41.89], [-87.64, 41.88]]]},
     "end where it starts"),
]


def test_a_bad_jurisdiction_file_is_a_clean_error(migrated):
    for content, words in BAD_FILES:
        output = migrated.fails("admin", "create-agency", "Bad PD", "--jurisdiction",
                                migrated.file("bad.geojson", content))
        assert "Error" in output and words in output, (content, output)
    output = migrated.fails("admin", "create-agency", "n" * 201, "--jurisdiction", migrated.file("ok.geojson", POLYGON))
    assert "name" in output
    migrated.fails("admin", "create-agency", "Lost PD", "--jurisdiction", str(migrated.tmp / "missing.geojson"), code=2)
    assert agencies(migrated) == []


def test_created_user_logs_in_over_http_with_the_printed_password(migrated):
    agency = migrated.agency()
    created = migrated.json("admin", "create-user", "chief@metro.example.org", "--agency", agency, "--role", "supervisor")
    assert set(created) == {"id", "password"} and len(created["password"]) >= 12
    admin = migrated.json("admin", "create-user", "it@city.example.org", "--role", "admin")

    async def check(client: TestClient) -> None:
        me = await (await client.get("/api/v1/me", headers=await login(client, "chief@metro.example.org",
                                                                        created["password"]))).json()
        assert me == {"id": created["id"], "role": "supervisor", "agency_id": agency, "name": "chief"}
        me = await (await client.get("/api/v1/me", headers=await login(client, "it@city.example.org",
                                                                        admin["password"]))).json()
        assert me["role"] == "admin" and me["agency_id"] is None  # the platform administrator

    migrated.http(check)


def test_create_user_refuses_cleanly(migrated):
    agency = migrated.agency()
    assert "--agency" in migrated.fails("admin", "create-user", "x@example.org", "--role", "investigator", code=2)
    assert "email" in migrated.fails("admin", "create-user", "not-an-email", "--agency", agency, "--role", "investigator")
    assert "no agency" in migrated.fails("admin", "create-user", "x@example.org", "--agency", "nope", "--role", "auditor")
    migrated.json("admin", "create-user", "x@example.org", "--agency", agency, "--role", "auditor")
    assert "already exists" in migrated.fails("admin", "create-user", "X@example.org", "--agency", agency,
                                              "--role", "auditor")
    migrated.fails("admin", "create-user", "y@example.org", "--agency", agency, "--role", "owner", code=2)


def test_plugins_lists_the_core_plugins(migrated):
    listed = migrated.json("plugins")
    names = {p["name"]: p for p in listed["plugins"]}
    assert {"consentcam-core", "consentcam-email", "consentcam-webhook"} <= set(names)
    assert names["consentcam-email"]["capabilities"] == ["notify_email"]
    assert listed["refused"] == []


def kill_switch(cli: Cli, others: int = 0) -> None:
    """Suspend one agency, then all, then resume, checking the effect over HTTP each time."""
    metro, county = cli.agency("Metro PD"), cli.agency("County PD", square(-87.53, 41.88, 0.01))
    users = {}
    for agency in (metro, county):
        email = f"investigator@{agency[:8]}.example.org"
        users[agency] = (email, cli.json("admin", "create-user", email, "--agency", agency, "--role", "investigator"))

    async def statuses(client: TestClient) -> dict[str, int]:
        out = {}
        for agency, (email, created) in users.items():
            headers = await login(client, email, created["password"])
            response = await client.get("/api/v1/map/cameras", headers=headers)
            if response.status == 403:
                assert "suspended" in (await response.json())["detail"]
            out[agency] = response.status
        return out

    assert cli.json("admin", "suspend-agency", metro, "--reason", "court order") == {"changed": 1, "suspended": True}
    assert cli.http(statuses) == {metro: 403, county: 200}
    assert cli.json("admin", "resume-agency", metro) == {"changed": 1, "suspended": False}
    assert cli.http(statuses) == {metro: 200, county: 200}
    assert cli.json("admin", "suspend-agency", "--all") == {"changed": 2 + others, "suspended": True}
    assert cli.http(statuses) == {metro: 403, county: 403}
    assert cli.json("admin", "resume-agency", "--all") == {"changed": 2 + others, "suspended": False}
    assert cli.http(statuses) == {metro: 200, county: 200}
    cli.fails("admin", "suspend-agency", code=2)
    cli.fails("admin", "suspend-agency", metro, "--all", code=2)
    assert "no agency" in cli.fails("admin", "suspend-agency", "not-an-agency")


def test_kill_switch_on_sqlite(migrated):
    kill_switch(migrated)


def test_agencies_users_and_kill_switch_on_each_backend(consentcam_database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = Cli(tmp_path, consentcam_database_url)  # already migrated; upgrading again changes nothing
    assert cli("db", "upgrade").exit_code == 0
    for form, geojson in FORMS.items():
        cli.agency(f"PD {form}", geojson)
    kill_switch(cli, others=len(FORMS))


def test_demo_loads_and_the_investigator_sees_cameras(migrated):
    summary = migrated.json("demo", "--owners", "5")
    assert summary["owners"] == 5 and summary["cameras"] >= 5 and summary["password"] == "demo-password"
    with sqlite3.connect(migrated.tmp / "consentcam.sqlite3") as db:
        mapped = {row[0] for row in db.execute("SELECT id FROM cameras WHERE grant_map AND status = 'active'")}
    assert mapped

    async def map_ids(client: TestClient) -> set[str]:
        headers = await login(client, "investigator1@demo.consentcam.org", "demo-password")
        body = await (await client.get("/api/v1/map/cameras", headers=headers)).json()
        return {f["id"] for f in body["features"]}

    assert migrated.http(map_ids) == mapped
    assert "already" in migrated.fails("demo", "--owners", "5")
