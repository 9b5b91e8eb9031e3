"""`consentcam`: run, migrate, seed and administer a deployment. With ``--json`` a command prints one JSON object."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .audit import Actor
from .errors import ConsentCamError
from .settings import Settings

T = TypeVar("T")


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(coro_fn())
    except ConsentCamError as error:
        raise click.ClickException(error.detail) from error


def _emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(payload, default=str) if as_json else text)


def _validated(model: Any, **fields: Any) -> Any:
    """The same wire model the API uses; its complaints become a clean error, not a traceback."""
    from pydantic import ValidationError

    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors(include_url=False))
        raise click.ClickException(problems) from exc


def _cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except Exception:  # no login name in some containers
        who = "unknown"
    return Actor(kind="system", role="admin", name=f"cli:{who}")


async def _with_platform(fn: Callable[[Any], Awaitable[T]], settings: Settings | None = None) -> T:
    from .platform import open_platform

    platform = await open_platform(settings or Settings())
    try:
        return await fn(platform)
    finally:
        from .vault.core import close_vault

        await close_vault(platform)
        await platform.db.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool) -> None:
    """ConsentCam: consent-first access to privately owned security cameras."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# --- running ------------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Apply migrations and load the demo city first if the database is empty.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations before serving.")
def serve(host: str, port: int, demo: bool, no_migrate: bool) -> None:
    """Run the platform (API, web UI and, on the embedded default, the job worker)."""
    from aiohttp import web

    from .db.migrate import upgrade
    from .http.app import create_app

    settings = Settings()
    if not no_migrate:
        upgrade(settings.resolved_database_url)
    if demo:
        from .demo import load_demo

        _run(lambda: _with_platform(lambda p: load_demo(p, only_if_empty=True, progress=_progress), settings))
        # The demo city's address points, so that "Find" in the owner portal works where the address-point
        # geocoder plugin is installed (scripts/serve-demo installs every plugin); a real deployment sets its own.
        if not os.environ.get("CONSENTCAM_ADDRESS_POINTS"):
            from .demo import write_address_points

            points = settings.data_dir / "demo-address-points.csv"
            write_address_points(points)
            os.environ["CONSENTCAM_ADDRESS_POINTS"] = str(points.resolve())
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    click.echo(f"ConsentCam on http://{host}:{port}/  (OpenAPI: http://{host}:{port}/api/v1/openapi.json)", err=True)
    web.run_app(create_app(settings), host=host, port=port, print=None, access_log=None)


@main.command()
@click.option("--once", is_flag=True, help="Run every ready job, then exit.")
@click.option("--name", default=None, help="Worker name shown in the jobs table.")
def worker(once: bool, name: str | None) -> None:
    """Run a job worker (notifications, fetches, analysis, exports)."""
    from .live.broker import open_broker
    from .workflows import make_worker

    async def go(p: Any) -> None:
        # With a broker, a direct fetch through an edge relay reaches the web process holding the agent's socket.
        async with open_broker(p.settings, role="worker") as broker:
            if broker is not None and once:
                await broker.wait_connected(p.settings.broker_timeout_seconds)
            w = make_worker(p, name)
            if once:
                done = await w.drain()
                click.echo(f"{done} job(s) run")
                return
            w.start()
            click.echo(f"worker {w.name} running; Ctrl-C to stop", err=True)
            try:
                await asyncio.Event().wait()
            finally:
                await w.stop()

    try:
        _run(lambda: _with_platform(go))
    except KeyboardInterrupt:
        pass


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (Alembic)."""
    from .db.migrate import upgrade

    settings = Settings()
    upgrade(settings.resolved_database_url, revision)
    click.echo(f"database at {revision}", err=True)


def _progress(label: str, done: int, total: int) -> None:
    if total and (done == total or done % max(1, total // 20) == 0):
        click.echo(f"\r{label}: {done}/{total}", nl=done == total, err=True)


@main.command()
@click.option("--owners", default=300, show_default=True, help="How many demo owners (each with one or two cameras).")
@click.option("--json", "as_json", is_flag=True)
def demo(owners: int, as_json: bool) -> None:
    """Load the demo city (an agency, its staff, owners and cameras on real downtown streets)."""
    from .db.migrate import upgrade
    from .demo import load_demo

    settings = Settings()
    upgrade(settings.resolved_database_url)
    summary = _run(lambda: _with_platform(lambda p: load_demo(p, owners=owners, progress=None if as_json else _progress), settings))
    _emit(as_json, summary, "\n".join(f"{k}: {v}" for k, v in summary.items()))


# --- administration -----------------------------------------------------------------------------------


@main.group()
def admin() -> None:
    """Agencies, their users, and the kill switch."""


@admin.command("create-agency")
@click.argument("name")
@click.option("--jurisdiction", "jurisdiction_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="GeoJSON Polygon or MultiPolygon (bare, Feature, or FeatureCollection of one).")
@click.option("--no-approval", is_flag=True, help="Open requests without a supervisor's approval.")
@click.option("--json", "as_json", is_flag=True)
def create_agency(name: str, jurisdiction_file: Path, no_approval: bool, as_json: bool) -> None:
    """Create an agency with its jurisdiction."""
    from .schemas import AgencyCreate
    from .services.accounts import create_agency as create

    try:
        geojson = json.loads(jurisdiction_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{jurisdiction_file}: not JSON ({exc})") from exc
    spec = _validated(AgencyCreate, name=name, jurisdiction=geojson, require_approval=not no_approval)
    agency_id = _run(lambda: _with_platform(lambda p: create(p, _cli_actor(), spec, ("jurisdiction",))))
    _emit(as_json, {"id": agency_id}, agency_id)


@admin.command("create-user")
@click.argument("email")
@click.option("--agency", "agency_id", default=None, help="Agency id; omit with --role admin for the city's platform admin.")
@click.option("--role", required=True, type=click.Choice(["investigator", "supervisor", "auditor", "admin"]))
@click.option("--name", default=None)
@click.option("--json", "as_json", is_flag=True)
def create_user(email: str, agency_id: str | None, role: str, name: str | None, as_json: bool) -> None:
    """Create an agency user and print a one-time password."""
    from .schemas import AgencyUserCreate
    from .services.accounts import create_agency_user

    if agency_id is None and role != "admin":
        raise click.UsageError("--agency is required unless --role admin creates the platform administrator")
    _validated(AgencyUserCreate, email=email, name=name, role=role)
    user_id, password = _run(lambda: _with_platform(
        lambda p: create_agency_user(p, _cli_actor(), agency_id or "", email, role, name, platform_admin=agency_id is None)
    ))
    _emit(as_json, {"id": user_id, "password": password}, f"{user_id}\none-time password: {password}")


def _suspension(suspend: bool) -> Callable[..., None]:
    def command(agency_id: str | None, all_agencies: bool, reason: str | None, as_json: bool) -> None:
        from .services.accounts import set_suspended

        if bool(agency_id) == all_agencies:
            raise click.UsageError("give one agency id, or --all")
        changed = _run(lambda: _with_platform(lambda p: set_suspended(p, _cli_actor(), agency_id, suspend, reason)))
        word = "suspended" if suspend else "resumed"
        _emit(as_json, {"changed": changed, "suspended": suspend}, f"{changed} agenc{'y' if changed == 1 else 'ies'} {word}")

    return command


for _name, _flag, _help in (("suspend-agency", True, "Kill switch: refuse every request by an agency's users."),
                            ("resume-agency", False, "Lift a suspension.")):
    admin.command(_name, help=_help)(
        click.argument("agency_id", required=False)(
            click.option("--all", "all_agencies", is_flag=True, help="Every agency.")(
                click.option("--reason", default=None)(click.option("--json", "as_json", is_flag=True)(_suspension(_flag)))
            )
        )
    )


# --- plugins ------------------------------------------------------------------------------------------


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins with versions and declared capabilities, and any refused."""
    from .platform import builtin_plugins
    from .plugins import make_plugin_host
    from .security import Keyring

    settings = Settings()
    host = make_plugin_host(builtin_plugins(settings, Keyring(settings.deployment_key())),
                            load_entry_points=settings.load_entry_point_plugins)
    payload = {
        "plugins": [{"name": p.info.name, "version": p.info.version, "capabilities": list(p.info.capabilities),
                     "source": p.source} for p in host.loaded],
        "refused": [{"name": n, "reason": r} for n, r in host.refused],
    }
    lines = [f"{p['name']} {p['version']}  [{', '.join(p['capabilities'])}]  ({p['source']})" for p in payload["plugins"]]
    lines += [f"REFUSED {n}: {r}" for n, r in host.refused]
    _emit(as_json, payload, "\n".join(lines))


@main.group("plugin")
def plugin_group() -> None:
    """Write a plugin of your own."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--path", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to create (default: ./consentcam-NAME).")
@click.option("--json", "as_json", is_flag=True)
def plugin_new(name: str, target: Path | None, as_json: bool) -> None:
    """Scaffold an adapter distribution that passes the vendor kit except where you must write code (PLACEHOLDER)."""
    from .scaffold import names, scaffold

    try:
        folder = target or Path(f"consentcam-{names(name)['dist']}")
        written = scaffold(name, folder)
    except (ValueError, FileExistsError) as exc:
        raise click.UsageError(str(exc)) from exc
    _emit(as_json, {"path": str(folder), "files": [str(p) for p in written]},
          "\n".join([f"wrote {folder}/", *(f"  {p.relative_to(folder)}" for p in written),
                     f"next: pip install -e '{folder}[testing]' && pytest {folder}/tests"]))


@main.command("verify-audit")
@click.option("--json", "as_json", is_flag=True)
def verify_audit(as_json: bool) -> None:
    """Recompute the audit chain from the database, as GET /api/v1/audit/verify does; exits 1 when it is broken
    (after restoring a backup, compare the head with the one recorded at backup time)."""
    from .audit import verify_chain
    from .db import Database

    async def go() -> Any:
        database = Database(Settings().resolved_database_url)
        try:
            return await verify_chain(database)
        finally:
            await database.dispose()

    check = _run(go)
    payload = {"ok": check.ok, "events": check.events, "head": check.head, "broken_at": check.broken_at,
               "reason": check.reason}
    text = (f"OK: {check.events} events, head {check.head}" if check.ok
            else f"BROKEN at event {check.broken_at}: {check.reason} ({check.events} events verified before it)")
    _emit(as_json, payload, text)
    if not check.ok:
        sys.exit(1)


# --- evidence packages --------------------------------------------------------------------------------


@main.command("verify-export")
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", "public_key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pin the signer: an Ed25519 public key (PEM, or 32 bytes in hex/base64) obtained separately, "
                   "e.g. from GET /api/v1/signing-key of the platform you trust.")
@click.option("--deployment-key", is_flag=True,
              help="Pin the signer to this deployment's own key (CONSENTCAM_SECRET_KEY or <data_dir>/secret.key).")
@click.option("--json", "as_json", is_flag=True)
def verify_export(package: Path, public_key_file: Path | None, deployment_key: bool, as_json: bool) -> None:
    """Check an export package: every clip's size and SHA-256 against the manifest, every custody event's hash,
    that nothing unlisted is inside, and the Ed25519 signature of the manifest. Exits 1 on any mismatch.

    Trust model: the package carries the signer's public key, so on its own a good signature only proves that
    nothing changed since someone signed it; anyone can re-sign an altered package with a key of their own. Pin
    the key to trust the signer: --public-key with the key the platform publishes (fetched separately, over a
    channel you trust), or --deployment-key on the platform's own host. A pinned key that differs from the
    package's is a mismatch. No database or network is used.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from .vault.export import load_public_key, verify_package

    if public_key_file and deployment_key:
        raise click.UsageError("pin one key: --public-key or --deployment-key")
    pinned: Ed25519PublicKey | None = None
    if public_key_file:
        try:
            pinned = load_public_key(public_key_file.read_bytes())
        except ValueError as exc:
            raise click.UsageError(f"{public_key_file}: {exc}") from exc
    elif deployment_key:
        from .security import Keyring

        settings = Settings()
        if not settings.secret_key and not (settings.data_dir / "secret.key").exists():
            raise click.UsageError("no deployment key here: set CONSENTCAM_SECRET_KEY or CONSENTCAM_DATA_DIR")
        pinned = Keyring(settings.deployment_key()).verify_key()
    report = verify_package(package, pinned)
    trust = "pinned key" if report.pinned else "the key inside the package (integrity only; pin a key to trust the signer)"
    lines = [f"{'OK' if report.ok else 'FAILED'}: {package}",
             f"case {report.case_number}, export {report.export_id}, {report.items} clip(s)",
             f"signer {report.key_id}, checked against {trust}"]
    lines += [f"  - {problem}" for problem in report.problems]
    _emit(as_json, report.as_json(), "\n".join(lines))
    if not report.ok:
        sys.exit(1)


# --- cameras ------------------------------------------------------------------------------------------


@main.command("discover")
@click.option("--timeout", "timeout_s", default=3.0, show_default=True, type=click.FloatRange(0.1, 60.0),
              help="Seconds to wait for answers.")
@click.option("--json", "as_json", is_flag=True)
def discover_cmd(timeout_s: float, as_json: bool) -> None:
    """Find cameras on the local network through every installed plugin (ONVIF: WS-Discovery). No database."""
    from dataclasses import asdict

    from .plugins import make_plugin_host

    host = make_plugin_host(load_entry_points=Settings().load_entry_point_plugins)
    found = _run(lambda: host.discover_cameras(timeout_s))
    cameras = [asdict(camera) for camera in found]
    lines = [f"{c['address']}  {c['name'] or '(no name)'}  [{c['kind']}]  {' '.join(c['xaddrs'])}"
             + (f"  hardware: {c['hardware']}" if c["hardware"] else "") + (f"  location: {c['location']}" if c["location"] else "")
             for c in cameras]
    _emit(as_json, {"cameras": cameras, "timeout_s": timeout_s},
          "\n".join(lines) or f"no camera answered within {timeout_s:g} s")



# --- analysis models ----------------------------------------------------------------------------------


@main.group("models")
def models_group() -> None:
    """Analysis models: obtained and verified once, so that analysis needs no network at run time."""


def _analysis_models(analyser: str | None) -> list[Any]:
    from .plugins import make_plugin_host

    models = make_plugin_host(load_entry_points=Settings().load_entry_point_plugins).analysis_models()
    chosen = [m for m in models if analyser in (None, m.analyser)]
    if not chosen:
        click.echo("error: " + (f"no analysis plugin named {analyser!r} needs a model" if analyser
                                else "no installed analysis plugin needs a model"), err=True)
        sys.exit(1)
    return chosen


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json: bool) -> None:
    """Each analysis plugin's model file: where it is, whether it is there, its SHA-256 and the pinned one."""
    import hashlib

    rows = []
    for model in _analysis_models(None):
        digest = None
        if model.path.is_file():
            hasher = hashlib.sha256()
            with open(model.path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    hasher.update(chunk)
            digest = hasher.hexdigest()
        rows.append({"analyser": model.analyser, "name": model.name, "path": str(model.path),
                     "present": digest is not None, "sha256": digest, "pinned_sha256": model.pinned_sha256,
                     "matches_pin": None if model.pinned_sha256 is None or digest is None else digest == model.pinned_sha256})
    lines = [f"{r['analyser']}: {r['name']}\n  {r['path']}\n  "
             + (f"sha256 {r['sha256']}" + ("" if r["matches_pin"] in (None, True) else f" (pinned: {r['pinned_sha256']})")
                if r["present"] else "missing: run `consentcam models fetch`") for r in rows]
    _emit(as_json, {"models": rows}, "\n".join(lines))


@models_group.command("fetch")
@click.argument("source", required=False)
@click.option("--analyser", default=None, help="Only this plugin's model (required with SOURCE when several).")
@click.option("--sha256", "expected", default=None, help="Refuse SOURCE unless its SHA-256 is this.")
@click.option("--json", "as_json", is_flag=True)
def models_fetch(source: str | None, analyser: str | None, expected: str | None, as_json: bool) -> None:
    """Obtain and verify each analysis plugin's default model, or SOURCE (a URL or a local file) for one."""
    from .errors import ConsentCamError

    models = _analysis_models(analyser)
    if source and len(models) > 1:
        click.echo("error: SOURCE is one file: name its analyser with --analyser", err=True)
        sys.exit(2)
    fetched = []
    for model in models:
        try:
            got = model.fetch(source, expected)
        except ConsentCamError as exc:
            click.echo(f"error: {model.analyser}: {exc.detail}", err=True)
            sys.exit(1)
        fetched.append({"analyser": model.analyser, "path": str(got.path), "sha256": got.sha256, "size": got.size,
                        "source": got.source})
    _emit(as_json, {"models": fetched},
          "\n".join(f"{f['analyser']}: {f['path']}\n  sha256 {f['sha256']} ({f['size']} bytes) from {f['source']}"
                    for f in fetched))

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
