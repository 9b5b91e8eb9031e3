"""The vault after upload, over real HTTP: search with filters and pages, retention per case category, legal
hold, disposal (bytes gone, custody record kept, shared bytes kept), the plugin hooks called from outbox jobs with
the reference records plugin delivering to a folder and to a real HTTPS endpoint, and recovery after a crash."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from consentcam import hookimpl
from consentcam.db.models import Evidence, Export, Job, Upload
from consentcam.errors import ServiceUnavailable
from consentcam.hooktypes import EvidenceRecord, ExportPackage, PluginInfo
from consentcam.plugins import make_plugin_host
from consentcam.vault import startup, upkeep, vault_for
from consentcam.workflows import make_worker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from .conftest import count, ok, problem
from .fixtures.vault import (
    open_case,
    open_request,
    put_clip,
    sha256,
    variant,
)

pytest_plugins = ("tests.fixtures.clips",)  # h264_clip, other_clip
pytestmark = pytest.mark.usefixtures("fast_passwords")


def stored_names(platform) -> list[str]:
    root = platform.settings.resolved_evidence_dir / "sha256"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def search(api, person, **params) -> dict:
    return await ok(await api.get("/api/v1/evidence", headers=person.headers,
                                  params={k: v for k, v in params.items() if v is not None}))


async def test_search_filters_by_request_camera_time_and_label_with_pages(api, consentcam_world, consentcam_clock,
                                                                         consentcam_platform, h264_clip, other_clip,
                                                                         tmp_path):
    clock, world = consentcam_clock, consentcam_world
    case = await open_case(api, world, clock, cameras=2)
    a = await ok(await put_clip(api, case.path(0), h264_clip.read_bytes()), 201)  # records 08:30:00-08:30:05
    clock.advance(1)
    b = await ok(await put_clip(api, case.path(1), other_clip.read_bytes()), 201)  # no times: the window 08:00-09:00
    clock.advance(1)
    camera0 = case.links[0]["camera_id"]
    second_request, links = await open_request(api, world, clock, case.agency, case.investigator, case.supervisor,
                                               [(case.owners[0], camera0)], case_number="2026-0100")
    c = await ok(await put_clip(api, links[0]["path"], variant(h264_clip, tmp_path / "c.mp4", "c").read_bytes()), 201)
    ids = {"a": a["evidence_id"], "b": b["evidence_id"], "c": c["evidence_id"]}
    name = {v: k for k, v in ids.items()}

    def names(page: dict) -> list[str]:
        return [name[i["id"]] for i in page["items"]]

    me = case.investigator
    assert names(await search(api, me)) == ["c", "b", "a"]  # newest first
    assert names(await search(api, me, request_id=case.request_id)) == ["b", "a"]
    assert names(await search(api, me, camera_id=camera0)) == ["c", "a"]
    assert names(await search(api, me, **{"from": "2026-06-01T08:20:00Z", "to": "2026-06-01T08:40:00Z"})) == ["c", "b", "a"]
    assert names(await search(api, me, **{"from": "2026-06-01T08:31:00Z"})) == ["b"]
    assert names(await search(api, me, to="2026-06-01T07:00:00Z")) == []
    assert names(await search(api, me, label="pickup_truck")) == []  # no analysis labels exist yet
    page = await search(api, me, camera_id=camera0)
    assert page["items"][0]["case_number"] == "2026-0100" and page["items"][0]["media"]["video"]["codec"] == "h264"

    first = await search(api, me, limit=2)
    assert names(first) == ["c", "b"] and first["next_cursor"]
    rest = await search(api, me, limit=2, cursor=first["next_cursor"])
    assert names(rest) == ["a"] and rest["next_cursor"] is None

    await problem(await api.get("/api/v1/evidence", headers=me.headers, params={"cursor": "nonsense"}), 422)
    await problem(await api.get("/api/v1/evidence", headers=me.headers, params={"colour": "red"}), 422)
    await problem(await api.get("/api/v1/evidence", headers=me.headers, params={"from": "yesterday"}), 422)
    await problem(await api.get("/api/v1/evidence", headers=case.owners[0].headers), 403)
    elsewhere = await world.staff(await world.agency(name="Elsewhere PD", lon=-87.5, lat=41.9), "investigator")
    assert (await search(api, elsewhere))["items"] == []
    # A search is one audit event naming what it revealed.
    async with consentcam_platform.db.sessions() as session:
        from consentcam.db.models import AuditEvent

        searched = (await session.execute(select(AuditEvent).where(AuditEvent.action == "evidence.searched")
                                          .order_by(AuditEvent.seq))).scalars().all()
    assert set(searched[0].detail["evidence_ids"]) == set(ids.values())


async def test_retention_per_category_hold_and_disposal_keep_the_custody_record(api, consentcam_world, consentcam_clock,
                                                                               consentcam_platform, h264_clip, tmp_path):
    p, clock, world = consentcam_platform, consentcam_clock, consentcam_world
    p.settings.token_hours = 24 * 365  # the staff stay signed in while a month passes
    case = await open_case(api, world, clock, cameras=2, category="burglary")
    data = h264_clip.read_bytes()
    z_bytes = variant(h264_clip, tmp_path / "z.mp4", "z").read_bytes()
    x = (await ok(await put_clip(api, case.path(0), data), 201))["evidence_id"]
    z = (await ok(await put_clip(api, case.path(1), z_bytes), 201))["evidence_id"]
    _, links = await open_request(api, world, clock, case.agency, case.investigator, case.supervisor,
                                  [(case.owners[0], case.links[0]["camera_id"])], category="homicide",
                                  case_number="2026-0101")
    y = (await ok(await put_clip(api, links[0]["path"], data), 201))["evidence_id"]  # the same bytes as x
    assert stored_names(p) == sorted([sha256(data), sha256(z_bytes)])
    package = await api.post(f"/api/v1/requests/{case.request_id}/export", headers=case.investigator.headers)
    assert package.status == 201
    export_id = package.headers["X-Export-Id"]

    sup, inv = case.supervisor, case.investigator
    await problem(await api.put("/api/v1/retention/burglary", json={"days": 30}, headers=inv.headers), 403)
    await problem(await api.put("/api/v1/retention/Bad Category", json={"days": 30}, headers=sup.headers), 422)
    await problem(await api.put("/api/v1/retention/burglary", json={"days": 0}, headers=sup.headers), 422)
    await ok(await api.put("/api/v1/retention/burglary", json={"days": 30}, headers=sup.headers))
    assert (await ok(await api.get("/api/v1/retention", headers=inv.headers)))["policies"][0]["days"] == 30
    await problem(await api.post(f"/api/v1/evidence/{z}/hold", json={"reason": "appeal"}, headers=inv.headers), 403)
    assert (await ok(await api.post(f"/api/v1/evidence/{z}/hold", json={"reason": "appeal pending"},
                                    headers=sup.headers)))["on_hold"] is True

    clock.advance(29 * 86400)
    assert (await upkeep(p))["disposed"] == 0
    clock.advance(2 * 86400)
    assert (await upkeep(p))["disposed"] == 1  # x only: z is held, y's category keeps everything
    await make_worker(p).drain()

    record = await ok(await api.get(f"/api/v1/evidence/{x}", headers=inv.headers))
    assert record["disposed_at"] is not None
    disposed = record["custody"][-2]  # the last one is this read
    assert disposed["action"] == "custody.disposed" and "burglary" in disposed["detail"]["reason"]
    assert disposed["detail"]["sha256"] == sha256(data)
    await problem(await api.get(f"/api/v1/evidence/{x}/content", headers=inv.headers), 410)
    # y shares x's bytes and is kept: so are the bytes.
    assert await (await api.get(f"/api/v1/evidence/{y}/content", headers=inv.headers)).read() == data
    assert stored_names(p) == sorted([sha256(data), sha256(z_bytes)])
    # The package carrying a copy of x was purged with it.
    async with p.db.sessions() as session:
        assert (await session.get(Export, export_id)).status == "purged"
    await problem(await api.get(f"/api/v1/exports/{export_id}", headers=inv.headers), 410)
    assert not (vault_for(p).export_dir / f"{export_id}.zip").exists()

    await ok(await api.delete(f"/api/v1/evidence/{z}/hold", headers=sup.headers))
    assert (await upkeep(p))["disposed"] == 1
    await make_worker(p).drain()
    assert stored_names(p) == [sha256(data)]
    actions = [e["action"] for e in (await ok(await api.get(f"/api/v1/evidence/{z}", headers=inv.headers)))["custody"]]
    assert actions[:2] == ["custody.received", "custody.verified"]
    assert actions[-4:-1] == ["custody.held", "custody.released", "custody.disposed"]
    await problem(await api.post(f"/api/v1/evidence/{z}/hold", json={"reason": "too late"}, headers=sup.headers), 409)
    await problem(await api.post(f"/api/v1/requests/{case.request_id}/export", headers=inv.headers), 409)

    # "default" covers the categories without a policy of their own: y goes, and with it the last copy of its bytes.
    await ok(await api.put("/api/v1/retention/default", json={"days": 60}, headers=sup.headers))
    assert (await upkeep(p))["disposed"] == 0
    clock.advance(30 * 86400)
    assert (await upkeep(p))["disposed"] == 1
    await make_worker(p).drain()
    assert stored_names(p) == []
    await problem(await api.get(f"/api/v1/evidence/{y}/content", headers=inv.headers), 410)
    assert (await ok(await api.get("/api/v1/audit/verify", headers=case.auditor.headers)))["ok"] is True


# --- hooks and the records plugin ---------------------------------------------------------------------


class Recorder:
    name = "test-recorder"

    def __init__(self) -> None:
        self.stored: list[tuple[EvidenceRecord, bytes]] = []
        self.exports: list[ExportPackage] = []

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("test-recorder", "1", ("evidence_export",))

    @hookimpl
    async def consentcam_evidence_stored(self, evidence: EvidenceRecord) -> None:
        assert evidence.open_bytes is not None
        reader = await evidence.open_bytes()
        self.stored.append((evidence, await reader.read()))

    @hookimpl
    async def consentcam_export_ready(self, export: ExportPackage) -> None:
        self.exports.append(export)


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "rms.pem", folder / "rms.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class RecordsEndpoint:
    """A real HTTPS server standing in for an RMS: fails the first delivery with 503, accepts after."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = True

    async def ingest(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_next:
            self.fail_next = False
            return web.Response(status=503, text="busy")
        self.received.append((dict(request.headers), body))
        return web.Response(status=201)


async def test_hooks_run_from_jobs_and_the_records_plugin_delivers_to_a_folder_and_https(
        api, consentcam_world, consentcam_clock, consentcam_platform, h264_clip, tmp_path):
    from consentcam_records_folder import RecordsFolder

    p = consentcam_platform
    # The distribution is installed and found through the entry point like any third-party plugin.
    host = make_plugin_host(load_entry_points=True)
    loaded = {x.info.name: x for x in host.loaded}
    assert loaded["records_folder"].info.capabilities == ("records_delivery",)

    cert, key = self_signed(tmp_path)
    endpoint = RecordsEndpoint()
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/ingest", endpoint.ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        recorder = Recorder()
        folder = tmp_path / "rms-inbox"
        records = RecordsFolder(folder=folder, url=f"https://127.0.0.1:{port}/ingest", token="rms-token", ca_file=cert)
        p.plugins.pm.register(records, name="records_folder")
        p.plugins.pm.register(recorder, name="test-recorder")

        case = await open_case(api, consentcam_world, consentcam_clock)
        data = h264_clip.read_bytes()
        receipt = await ok(await put_clip(api, case.path(), data), 201)
        package = await api.post(f"/api/v1/requests/{case.request_id}/export", headers=case.investigator.headers)
        zip_bytes = await package.read()
        digest = hashlib.sha256(zip_bytes).hexdigest()

        await make_worker(p).drain()
        (stored, read), = recorder.stored
        assert stored.evidence_id == receipt["evidence_id"] and stored.sha256 == receipt["sha256"] and read == data
        assert stored.media["video"]["codec"] == "h264"
        export = recorder.exports[0]
        assert export.request_id == case.request_id and export.sha256 == digest and export.path.read_bytes() == zip_bytes
        # The plugin's read of the clip is in its custody chain.
        record = await ok(await api.get(f"/api/v1/evidence/{receipt['evidence_id']}", headers=case.investigator.headers))
        assert [e["actor_role"] for e in record["custody"] if e["action"] == "custody.downloaded"] == ["plugin"]

        delivered = folder / case.request_id / export.path.name
        assert delivered.read_bytes() == zip_bytes
        assert delivered.with_name(delivered.name + ".sha256").read_text().split()[0] == digest
        # The endpoint refused the first try: the job waits to be retried, and is.
        assert endpoint.received == []
        async with p.db.sessions() as session:
            job = (await session.execute(select(Job).where(Job.kind == "export.ready"))).scalar_one()
        assert job.status == "pending" and "503" in job.last_error
        consentcam_clock.advance(3600)
        await make_worker(p).drain()
        (headers, body), = endpoint.received
        assert body == zip_bytes and headers["Authorization"] == "Bearer rms-token"
        assert headers["Idempotency-Key"] == digest and headers["X-ConsentCam-Request-Id"] == case.request_id
        async with p.db.sessions() as session:
            assert (await session.get(Job, job.id)).status == "done"
        assert {(e.request_id, e.sha256) for e in recorder.exports} == {(case.request_id, digest)}  # at least once
    finally:
        await runner.cleanup()


# --- recovery -----------------------------------------------------------------------------------------


async def test_startup_recovers_an_interrupted_completion_and_removes_stray_files(api, consentcam_world,
                                                                                 consentcam_clock, consentcam_platform,
                                                                                 h264_clip, monkeypatch):
    p = consentcam_platform
    vault = vault_for(p)
    case = await open_case(api, consentcam_world, consentcam_clock, cameras=2)
    data = h264_clip.read_bytes()
    size = len(data)

    # The database goes away just as the clip would be committed: the store already holds the object.
    from consentcam.services import requests

    real_check = requests.check_upload

    async def unavailable(*args, **kwargs):
        if kwargs.get("lock"):
            raise ServiceUnavailable("the database is not reachable right now")
        return await real_check(*args, **kwargs)

    monkeypatch.setattr(requests, "check_upload", unavailable)
    await problem(await put_clip(api, case.path(0), data), 503)
    monkeypatch.setattr(requests, "check_upload", real_check)
    assert await count(p, Evidence) == 0
    assert stored_names(p) == [sha256(data)]  # placed, but no evidence row names it: the state a crash leaves
    async with p.db.sessions() as session:
        upload = (await session.execute(select(Upload))).scalar_one()
    assert upload.sha256 == sha256(data)

    # Leftovers of other crashes: a temporary file no upload row names, and an export that never finished.
    stray = vault.upload_dir / "lost.part"
    stray.write_bytes(b"half of something")
    vault.export_dir.mkdir(parents=True, exist_ok=True)
    (vault.export_dir / "gone.zip.part").write_bytes(b"PK")
    async with p.db.transaction() as session:
        session.add(Export(id="00000000-0000-0000-0000-00000000e001", request_id=case.request_id, agency_id=case.agency,
                           status="building", evidence_ids=[], created_at=consentcam_clock.now()))

    report = await startup(p)
    assert report == {"undone": 1, "temp_removed": 1, "exports_failed": 1}
    assert stored_names(p) == [] and not stray.exists() and list(vault.export_dir.iterdir()) == []
    async with p.db.sessions() as session:
        assert (await session.get(Upload, upload.id)).sha256 is None
        assert (await session.get(Export, "00000000-0000-0000-0000-00000000e001")).status == "failed"

    # Every byte is still there: the owner's client asks to complete, and gets the same clip.
    status = await ok(await api.get(case.path(0)))
    assert status["received"] == size
    receipt = await ok(await put_clip(api, case.path(0), b"", **{"Content-Range": f"bytes */{size}"}), 201)
    assert receipt["sha256"] == sha256(data) and stored_names(p) == [sha256(data)]

    # An upload through a link that died since (the request closed) is swept away by the workers' upkeep.
    await ok(await put_clip(api, case.path(1), data[:5000], **{"Content-Range": f"bytes 0-4999/{size}"}), 202)
    await ok(await api.post(f"/api/v1/requests/{case.request_id}/close", headers=case.investigator.headers))
    assert (await upkeep(p))["uploads_abandoned"] == 1
    assert await count(p, Upload) == 0 and list(vault.upload_dir.iterdir()) == []
