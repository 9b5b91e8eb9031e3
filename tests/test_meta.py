"""Tests about the code base itself: every module imports on its own with warnings as errors, the core imports no
vendor library and no plugin, and the OpenAPI document describes every route the app serves."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import consentcam
import pytest

from .conftest import ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")

CORE = Path(consentcam.__file__).parent
# Alembic's env runs migrations when imported; it is imported by Alembic, inside a migration context, only.
NOT_IMPORTABLE_ALONE = {"consentcam.migrations.env"}
# From the files, not pkgutil: a folder that lacks its __init__.py must not hide its modules.
MODULES = sorted(
    name for name in (
        ".".join(("consentcam", *path.relative_to(CORE).with_suffix("").parts)).removesuffix(".__init__")
        for path in CORE.rglob("*.py")
    )
    if name not in NOT_IMPORTABLE_ALONE
)
# Heavy third-party libraries, imported (with warnings as errors too) before forking one child per module.
PRELOAD = ["aiohttp", "aiohttp.web", "aiosmtplib", "alembic", "alembic.command", "argon2", "asyncpg", "click",
           "cryptography", "email_validator", "hypothesis", "hypothesis.stateful", "numpy", "pluggy", "pydantic",
           "pydantic_settings", "pyproj", "pytest", "shapely", "sqlalchemy", "sqlalchemy.dialects.postgresql",
           "sqlalchemy.ext.asyncio"]

# Camera vendors' and media libraries, which only plugins may use.
VENDOR_LIBRARIES = {"onvif", "onvif_zeep", "zeep", "wsdiscovery", "WSDiscovery", "ring_doorbell", "av", "cv2", "ffmpeg",
                    "aiortc", "hikvision", "dahua", "amcrest", "reolink", "reolink_aio", "pyezviz", "blinkpy", "fusus",
                    "ultralytics", "onnxruntime", "torch", "face_recognition", "dlib", "insightface", "deepface"}
# Explicit exceptions: (library, module path relative to the package) where the core may use one of them.
ALLOWED_VENDOR_IMPORTS: set[tuple[str, str]] = {
    ("av", "vault/media.py"),  # reads media facts of uploaded clips, in a child process; no camera vendor
}
PLUGIN_PACKAGE_PREFIX = "consentcam_"  # consentcam_onvif, consentcam_rtsp, consentcam_ring_export, ...


# --- imports --------------------------------------------------------------------------------------------

IMPORT_EACH = textwrap.dedent("""
    import importlib, json, os, sys, traceback, warnings
    warnings.simplefilter("error")
    preload, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for name in preload:
        importlib.import_module(name)
    assert not [m for m in sys.modules if m.split(".")[0] == "consentcam"], "consentcam imported by a dependency"

    def start(name):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a fresh interpreter state for our code: nothing of consentcam imported yet
            os.close(read)
            try:
                importlib.import_module(name)
                message = b""
            except BaseException:
                message = traceback.format_exc().encode()
            os.write(write, message)
            os._exit(0)
        os.close(write)
        return name, pid, read

    def finish(name, pid, read):
        with os.fdopen(read, "rb") as pipe:
            message = pipe.read()
        _, status = os.waitpid(pid, 0)
        return message.decode() or (f"exit status {status}" if status else "")

    failures, width = {}, max(2, os.cpu_count() or 2)
    for first in range(0, len(modules), width):
        for child in [start(name) for name in modules[first:first + width]]:
            message = finish(*child)
            if message:
                failures[child[0]] = message
    print(json.dumps(failures))
""")


def test_every_module_imports_alone_with_warnings_as_errors():
    assert len(MODULES) > 30 and "consentcam.http.app" in MODULES and "consentcam.cli" in MODULES
    walked = {m.name for m in pkgutil.walk_packages(consentcam.__path__, "consentcam.")}
    assert set(MODULES) - walked - {"consentcam"} == set(), "a package folder lacks its __init__.py"
    result = subprocess.run([sys.executable, "-W", "error", "-c", IMPORT_EACH, json.dumps(PRELOAD), json.dumps(MODULES)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout)
    assert failures == {}, "\n\n".join(f"{name}:\n{trace}" for name, trace in failures.items())


def imported_names(source: str) -> set[str]:
    """Top-level names a module imports, statically or through importlib with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in {"import_module", "__import__", "find_spec"}:
                names.add(node.args[0].value.split(".")[0])
    return names


def forbidden(name: str) -> bool:
    return name in VENDOR_LIBRARIES or name.startswith(PLUGIN_PACKAGE_PREFIX)


def test_the_scan_sees_every_kind_of_import():
    source = "import onvif.client\nfrom consentcam_rtsp.fetch import x\nimport importlib\nimportlib.import_module('cv2')\n" \
             "__import__('ring_doorbell')\nfrom . import sibling\n"
    assert {n for n in imported_names(source) if forbidden(n)} == {"onvif", "consentcam_rtsp", "cv2", "ring_doorbell"}


def test_core_imports_no_vendor_library_and_no_plugin():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 30
    offences = []
    for path in files:
        relative = path.relative_to(CORE).as_posix()
        for name in imported_names(path.read_text()):
            if forbidden(name) and (name, relative) not in ALLOWED_VENDOR_IMPORTS:
                offences.append(f"{relative} imports {name}")
    assert offences == []


def test_importing_the_whole_core_loads_no_vendor_library_and_no_plugin():
    script = textwrap.dedent("""
        import importlib, json, sys
        for name in json.loads(sys.argv[1]):
            importlib.import_module(name)
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(MODULES)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "consentcam" in loaded
    assert [n for n in loaded if forbidden(n)] == []


# --- the OpenAPI document -------------------------------------------------------------------------------


async def test_openapi_is_3_1_and_describes_every_route(api):
    doc = await ok(await api.get("/api/v1/openapi.json"))
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "ConsentCam"
    served = set()
    for route in api.server.app.router.routes():
        path = route.resource.canonical
        if route.method in {"HEAD", "OPTIONS"} or path == "/api/v1/openapi.json" or not path.startswith("/api/"):
            continue  # the web pages are HTML for browsers, not part of the JSON API
        served.add((route.method.lower(), path))
    documented = {(method, path) for path, methods in doc["paths"].items() for method in methods}
    assert served == documented
    assert {("get", "/api/v1/map/cameras"), ("put", "/api/v1/cameras/{camera_id}/grants"),
            ("get", "/api/v1/audit/verify")} <= documented

    problem_schema = doc["components"]["schemas"]["Problem"]
    assert set(problem_schema["required"]) == {"type", "title", "status", "detail"}
    for path, methods in doc["paths"].items():
        for method, item in methods.items():
            statuses = set(item["responses"])
            # Every operation declares its success: a 2xx, or 101 for the edge relay's WebSocket upgrade.
            assert any(s.startswith("2") or s == "101" for s in statuses), (method, path)
            if "security" in item:
                assert {"401", "403"} <= statuses, (method, path)
            if "requestBody" in item:
                assert {"400", "413", "422"} <= statuses, (method, path)
            for status in statuses - {s for s in statuses if s.startswith("2") or s == "101"}:
                content = item["responses"][status].get("content", {})
                assert "application/problem+json" in content, (method, path, status)
            for parameter in item.get("parameters", []):
                if parameter["in"] == "path":
                    assert "{" + parameter["name"] + "}" in path


async def test_a_sample_of_calls_answers_only_declared_statuses(api, consentcam_world, consentcam_settings):
    """Every response the ``api`` client sees is checked against the document at teardown; here a sample that
    walks each family of status codes on purpose."""
    w = consentcam_world
    agency = await w.agency()
    owner, investigator = await w.owner(), await w.staff(agency, "investigator")
    admin, auditor = await w.staff(None, "admin"), await w.staff(agency, "auditor")
    camera = await w.camera(owner, grant={"map": True})

    await ok(await api.get("/api/v1/health"))
    await ok(await api.post("/api/v1/auth/owners", json={"email": "x@example.org", "password": "long enough password",
                                                          "name": "X"}), 201)
    await problem(await api.post("/api/v1/auth/owners", json={"email": "x@example.org", "password": "long enough password",
                                                               "name": "X"}), 409)
    await problem(await api.post("/api/v1/auth/login", json={"email": "x@example.org", "password": "nope"}), 401)
    await problem(await api.get("/api/v1/me"), 401)
    await problem(await api.get("/api/v1/map/cameras", headers=owner.headers), 403)
    await problem(await api.get("/api/v1/cameras/nope", headers=owner.headers), 404)
    await problem(await api.post("/api/v1/cameras", headers=owner.headers, data=b"{"), 400)
    await problem(await api.post("/api/v1/cameras", headers=owner.headers, json={}), 422)
    await problem(await api.get("/api/v1/map/cameras", headers=investigator.headers, params={"bbox": "x"}), 422)
    assert (await api.delete(f"/api/v1/cameras/{camera}/grants", headers=owner.headers)).status == 200
    assert (await api.post("/api/v1/auth/logout", headers=owner.headers)).status == 204
    await ok(await api.get("/api/v1/plugins", headers=admin.headers))
    await ok(await api.get("/api/v1/audit/verify", headers=auditor.headers))
    await problem(await api.get("/api/v1/no/such/route"), 404)
    await problem(await api.request("PATCH", "/api/v1/me", headers=auditor.headers), 405)
    for _ in range(consentcam_settings.login_max_failures):
        await api.post("/api/v1/auth/login", json={"email": "y@example.org", "password": "wrong"})
    await problem(await api.post("/api/v1/auth/login", json={"email": "y@example.org", "password": "wrong"}), 429)
    statuses = {status for _, _, status, _, _ in api.responses}
    assert {200, 201, 204, 400, 401, 403, 404, 405, 409, 422, 429} <= statuses
