"""Export packages: a zip of a request's original clips with a manifest (case, items, per-file SHA-256 and size,
media facts, the full custody chain of each clip) and a detached Ed25519 signature of the manifest made with the
deployment's key. ``verify_package`` checks one without any database, for ``consentcam verify-export``.

Layout of a package::

    manifest.json        the manifest, exactly the bytes that were signed
    manifest.sig         64-byte Ed25519 signature of manifest.json
    signing-key.pem      the signer's public key (also inside the manifest), for tools such as openssl
    clips/<evidence id>.<ext>   the original bytes, unchanged
    README.txt           how to check the package by hand
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from .. import __version__
from ..db.models import Agency, AuditEvent, Evidence, Export, FootageRequest
from ..db.types import new_id
from ..errors import Conflict, Forbidden, Gone, NotFound
from ..jobs import enqueue
from ..platform import Platform
from ..services.accounts import Principal
from . import custody
from .core import vault_for

FORMAT = "consentcam-export/1"
MANIFEST, SIGNATURE, PUBLIC_KEY, README = "manifest.json", "manifest.sig", "signing-key.pem", "README.txt"
EXPORTERS = ("investigator", "supervisor")
COPY_CHUNK = 4 << 20

README_TEXT = """ConsentCam export package

manifest.json lists every clip in clips/ with its SHA-256 and size, its media facts, and its chain of custody
(events of the platform's hash-chained audit log). manifest.sig is an Ed25519 signature of manifest.json made with
the deployment's signing key; signing-key.pem is that key's public half.

Check everything:        consentcam verify-export PACKAGE.zip --public-key KEY.pem
Check the signature:     openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in manifest.json -sigfile manifest.sig
Check one clip:          sha256sum clips/FILE   (compare with the manifest)

The key inside the package proves only that the package is unchanged since someone signed it. That the someone
is the platform you trust shows when the key matches the one the platform publishes (GET /api/v1/signing-key),
obtained separately: pass it with --public-key.
"""


def public_key_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return "sha256:" + hashlib.sha256(public_key_raw(key)).hexdigest()


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """A PEM public key, or the 32 raw bytes in base64 or hex."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            raw = decode(text.decode())  # type: ignore[operator]
        except ValueError:
            continue
        if len(raw) == 32:
            return Ed25519PublicKey.from_public_bytes(raw)
    raise ValueError("not an Ed25519 public key (PEM, or 32 bytes in hex or base64)")


# --- building -------------------------------------------------------------------------------------------


class _HashingWriter:
    """A write-only, unseekable sink that hashes everything: zipfile then streams (data descriptors) in one pass."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.hasher.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()


@dataclass
class BuiltExport:
    id: str
    request_id: str
    case_number: str
    path: Path
    sha256: str
    size: int
    items: int
    file_name: str = field(default="")


async def build(p: Platform, principal: Principal, request_id: str) -> BuiltExport:
    if principal.role not in EXPORTERS and principal.role != "api_key":  # a key was checked for its scope already
        raise Forbidden("investigators and supervisors export cases")
    vault = vault_for(p)
    vault.export_dir.mkdir(parents=True, exist_ok=True)
    export_id = new_id()
    part = vault.export_dir / f"{export_id}.zip.part"
    from .ingest import open_locked

    held = await asyncio.to_thread(open_locked, part)  # locked from before the row exists: recovery can tell
    assert held is not None
    try:
        return await _build_locked(p, principal, request_id, export_id, part, held.fd)
    except BaseException:
        await asyncio.to_thread(part.unlink, missing_ok=True)
        raise
    finally:
        held.close()


async def _build_locked(p: Platform, principal: Principal, request_id: str, export_id: str, part: Path,
                        fd: int) -> BuiltExport:
    vault = vault_for(p)
    now = p.now()
    async with p.db.transaction() as session:
        request = (await session.execute(
            select(FootageRequest).where(FootageRequest.id == request_id).with_for_update())).scalar_one_or_none()
        if request is None or request.agency_id != principal.agency_id:
            raise NotFound("no such request")
        clips = (await session.execute(
            select(Evidence).where(Evidence.request_id == request.id, Evidence.disposed_at.is_(None)).order_by(Evidence.created_at, Evidence.id)
        )).scalars().all()
        if not clips:
            raise Conflict("this request has no clips in the vault to export")
        session.add(Export(id=export_id, request_id=request.id, agency_id=request.agency_id, created_by=principal.user_id,
                           status="building", evidence_ids=[e.id for e in clips], created_at=now))
        await session.flush()
        for evidence in clips:
            await custody.record(p, session, now, principal.actor, custody.EXPORTED, evidence, export_id=export_id,
                                 case_number=request.case_number)
    async with p.db.sessions() as session:
        agency = await session.get(Agency, request.agency_id)
        chains = await custody.events_of(session, [e.id for e in clips])
        head = (await session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1))).first()
    signing = p.keyring.signing_key()
    public = signing.public_key()
    items = []
    for evidence in clips:
        extension = (evidence.media or {}).get("extension", "bin")
        items.append({
            "evidence_id": evidence.id, "file": f"clips/{evidence.id}.{extension}", "sha256": evidence.sha256,
            "size": evidence.size, "camera_id": evidence.camera_id, "source": evidence.source,
            "uploaded_by": evidence.uploaded_by, "received_at": evidence.created_at.isoformat(),
            "recorded_start": _iso(evidence.recorded_start), "recorded_end": _iso(evidence.recorded_end),
            "on_hold": evidence.on_hold, "media": evidence.media, "provenance": evidence.provenance,
            "custody": [custody.event_out(e) for e in chains[evidence.id]],
        })
    manifest = {
        "format": FORMAT,
        "export_id": export_id,
        "created_at": now.isoformat(),
        "created_by": {"user_id": principal.user_id, "role": principal.role, "badge": principal.badge,
                       "agency_id": principal.agency_id},
        "platform": {"public_url": p.settings.public_url, "version": __version__},
        "agency": {"id": request.agency_id, "name": agency.name if agency else None},
        "request": {"id": request.id, "case_number": request.case_number, "description": request.description,
                    "category": request.category, "window": {"start": request.window_start.isoformat(),
                                                              "end": request.window_end.isoformat()},
                    "status": request.status, "created_at": request.created_at.isoformat(),
                    "approved_at": _iso(request.approved_at)},
        "signature": {"algorithm": "Ed25519", "public_key": base64.b64encode(public_key_raw(public)).decode(),
                      "key_id": key_id(public), "file": SIGNATURE},
        "audit_head": {"seq": head.seq, "hash": head.hash} if head else None,
        "items": items,
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode()
    signature = signing.sign(manifest_bytes)

    sources = []
    for evidence, item in zip(clips, items, strict=True):
        local = vault.storage.local_path(evidence.storage_key)
        if local is None:
            local = await vault.storage.fetch(evidence.storage_key, vault.export_dir / f"{export_id}.{evidence.id}.src")
        sources.append((local, item["file"]))
    try:
        sha256, size = await asyncio.to_thread(_write_zip, fd, manifest_bytes, signature, public_key_pem(public), sources)
    finally:
        for local, _ in sources:
            if local.parent == vault.export_dir:
                local.unlink(missing_ok=True)
    file_name = f"{export_id}.zip"
    await asyncio.to_thread(os.replace, part, vault.export_dir / file_name)
    async with p.db.transaction() as session:
        row = await session.get(Export, export_id)
        assert row is not None
        row.status, row.file_name, row.sha256, row.size, row.finished_at = "ready", file_name, sha256, size, p.now()
        await enqueue(session, p.now(), "export.ready", {"export_id": export_id}, key=f"export.ready:{export_id}")
    return BuiltExport(export_id, request.id, request.case_number, vault.export_dir / file_name, sha256, size,
                       len(items), file_name)


def _write_zip(fd: int, manifest: bytes, signature: bytes, public_pem: bytes, sources: list[tuple[Path, str]]) -> tuple[str, int]:
    raw = os.fdopen(os.dup(fd), "wb", buffering=1 << 20)
    with raw:
        sink = _HashingWriter(raw)
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as package:  # type: ignore[arg-type]
            stamp = (1980, 1, 1, 0, 0, 0)
            for name, data in ((README, README_TEXT.encode()), (MANIFEST, manifest), (SIGNATURE, signature),
                               (PUBLIC_KEY, public_pem)):
                package.writestr(zipfile.ZipInfo(name, stamp), data)
            for source, name in sources:
                info = zipfile.ZipInfo(name, stamp)
                info.file_size = source.stat().st_size
                with open(source, "rb") as clip, package.open(info, "w", force_zip64=True) as member:
                    while chunk := clip.read(COPY_CHUNK):
                        member.write(chunk)
        sink.flush()
        os.fsync(raw.fileno())
    return sink.hasher.hexdigest(), sink.size


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def open_export(p: Platform, principal: Principal, export_id: str) -> Export:
    """An export of the caller's agency, ready to download (audited)."""
    from .. import audit

    now = p.now()
    async with p.db.transaction() as session:
        export = await session.get(Export, export_id)
        if export is None or principal.agency_id is None or export.agency_id != principal.agency_id:
            raise NotFound("no such export")
        if export.status == "building":
            raise Conflict("this export is still being built")
        if export.status != "ready" or not export.file_name:
            raise Gone(f"this export is {export.status}" + (" (a clip in it was disposed of)" if export.status == "purged" else ""))
        cameras = (await session.execute(
            select(Evidence.camera_id).where(Evidence.id.in_(list(export.evidence_ids))))).scalars().all()
        await audit.record(p.db, session, now, principal.actor, "export.downloaded", subject_type="export",
                           subject_id=export.id, camera_ids=[c for c in cameras if c],
                           detail={"request_id": export.request_id, "sha256": export.sha256,
                                   "evidence_ids": list(export.evidence_ids)})
    return export


# --- verifying ------------------------------------------------------------------------------------------


@dataclass
class Verification:
    ok: bool
    problems: list[str]
    items: int
    key_id: str | None
    pinned: bool
    case_number: str | None = None
    export_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "items": self.items, "key_id": self.key_id,
                "pinned": self.pinned, "case_number": self.case_number, "export_id": self.export_id}


def verify_package(path: Path, pinned: Ed25519PublicKey | None = None) -> Verification:
    """Check a package: signature (with the pinned key, else the embedded one), every clip's size and SHA-256,
    every custody event's hash link and clip hash, and that the zip holds nothing the manifest does not list."""
    problems: list[str] = []
    try:
        package = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return Verification(False, [f"not a readable zip file: {exc}"], 0, None, pinned is not None)
    with package:
        names = set(package.namelist())
        for required in (MANIFEST, SIGNATURE):
            if required not in names:
                problems.append(f"{required} is missing")
        if problems:
            return Verification(False, problems, 0, None, pinned is not None)
        manifest_bytes = package.read(MANIFEST)
        signature = package.read(SIGNATURE)
        try:
            manifest = json.loads(manifest_bytes)
            embedded = Ed25519PublicKey.from_public_bytes(base64.b64decode(manifest["signature"]["public_key"]))
        except (ValueError, KeyError, TypeError) as exc:
            return Verification(False, [f"manifest.json is not a ConsentCam manifest: {exc}"], 0, None, pinned is not None)
        if manifest.get("format") != FORMAT:
            problems.append(f"unknown package format {manifest.get('format')!r}")
        if PUBLIC_KEY in names:
            try:
                if public_key_raw(load_public_key(package.read(PUBLIC_KEY))) != public_key_raw(embedded):
                    problems.append(f"{PUBLIC_KEY} is not the key named in the manifest")
            except ValueError as exc:
                problems.append(f"{PUBLIC_KEY}: {exc}")
        key = embedded
        if pinned is not None:
            if public_key_raw(pinned) != public_key_raw(embedded):
                problems.append(f"signed with key {key_id(embedded)}, not the pinned key {key_id(pinned)}")
            key = pinned
        try:
            key.verify(signature, manifest_bytes)
        except InvalidSignature:
            problems.append("the signature does not match manifest.json: the manifest was changed or signed by another key")

        items = manifest.get("items") or []
        listed = {MANIFEST, SIGNATURE, PUBLIC_KEY, README}
        for item in items:
            name, label = item.get("file"), item.get("evidence_id")
            listed.add(name)
            if name not in names:
                problems.append(f"{label}: {name} is missing from the package")
                continue
            hasher, size = hashlib.sha256(), 0
            try:
                with package.open(name) as member:
                    while chunk := member.read(COPY_CHUNK):
                        hasher.update(chunk)
                        size += len(chunk)
            except (zipfile.BadZipFile, OSError) as exc:
                problems.append(f"{label}: {name} cannot be read: {exc}")
                continue
            if size != item.get("size"):
                problems.append(f"{label}: {name} has {size} bytes, the manifest says {item.get('size')}")
            if hasher.hexdigest() != item.get("sha256"):
                problems.append(f"{label}: {name} hashes to {hasher.hexdigest()}, the manifest says {item.get('sha256')}")
            actions = []
            for event in item.get("custody") or []:
                actions.append(event.get("action"))
                try:
                    if not custody.event_hash_ok(event):
                        problems.append(f"{label}: custody event {event.get('seq')} does not match its hash")
                except (KeyError, TypeError, ValueError):
                    problems.append(f"{label}: custody event {event.get('seq')} is malformed")
                if event.get("subject_id") != label or (event.get("detail") or {}).get("sha256") != item.get("sha256"):
                    problems.append(f"{label}: custody event {event.get('seq')} is about another clip")
            if custody.RECEIVED not in actions:
                problems.append(f"{label}: the custody chain does not start with its receipt")
        for extra in sorted(names - listed):
            if not extra.endswith("/"):
                problems.append(f"{extra} is in the package but not in the manifest")
    request = manifest.get("request") or {}
    return Verification(not problems, problems, len(items), key_id(key), pinned is not None,
                        request.get("case_number"), manifest.get("export_id"))
