"""Checking an export package (``consentcam-export/1``) on the integrator's side, without the server.

A package is a zip: ``manifest.json`` (what was signed), ``manifest.sig`` (Ed25519 over those exact bytes),
``signing-key.pem`` and ``clips/<evidence id>.<ext>``. The signature is checked when ``cryptography`` is installed
(extra ``verify``); hashes and sizes always are."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IntegrityError

FORMAT = "consentcam-export/1"


@dataclass
class ExportVerification:
    path: Path
    export_id: str | None
    case_number: str | None
    clips: int
    signature_checked: bool
    key_pinned: bool
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise IntegrityError(f"{self.path.name}: " + "; ".join(self.problems))


def _raw_key(value: str | bytes) -> bytes:
    """32 raw bytes from base64 (as ``signing_key().public_key``) or a PEM public key."""
    text = value.encode() if isinstance(value, str) else value
    if text.strip().startswith(b"-----BEGIN"):
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_public_key(text)
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64decode(text.strip())


def _signature_ok(raw_key: bytes, signature: bytes, message: bytes) -> bool | None:
    """True or False, or None when ``cryptography`` is not installed."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_package(path: Path, public_key: str | bytes | None = None) -> ExportVerification:
    problems: list[str] = []
    with zipfile.ZipFile(path) as package:
        names = set(package.namelist())
        message = package.read("manifest.json")
        manifest = json.loads(message)
        result = ExportVerification(path, manifest.get("export_id"), (manifest.get("request") or {}).get("case_number"),
                                    len(manifest.get("items") or []), False, public_key is not None, manifest, problems)
        if manifest.get("format") != FORMAT:
            problems.append(f"unknown package format {manifest.get('format')!r}")
        embedded = base64.b64decode((manifest.get("signature") or {}).get("public_key", ""))
        key = embedded
        if public_key is not None:
            key = _raw_key(public_key)
            if key != embedded:
                problems.append("the package was signed with another key than the one pinned")
        checked = _signature_ok(key, package.read("manifest.sig"), message) if "manifest.sig" in names else False
        if checked is False:
            problems.append("the signature does not match manifest.json")
        result.signature_checked = bool(checked)
        for item in manifest.get("items") or []:
            name = item.get("file")
            if name not in names:
                problems.append(f"{name} is missing")
                continue
            hasher, size = hashlib.sha256(), 0
            try:
                with package.open(name) as member:
                    while chunk := member.read(1 << 20):
                        hasher.update(chunk)
                        size += len(chunk)
            except (zipfile.BadZipFile, OSError) as exc:  # e.g. a CRC mismatch: the bytes were changed
                problems.append(f"{name} cannot be read intact: {exc}")
                continue
            if size != item.get("size") or hasher.hexdigest() != item.get("sha256"):
                problems.append(f"{name}: {size} bytes hashing to {hasher.hexdigest()}, the manifest says "
                                f"{item.get('size')} bytes hashing to {item.get('sha256')}")
    return result
