"""`consentcam plugin new`: the scaffold loads, and its conformance tests pass out of the box except those that
need the vendor's code, which fail with a message saying PLACEHOLDER. It runs from its source folder here
(PYTHONPATH); that it builds, installs and is found through its entry point is shown by the vendor tutorial,
docs/vendors/tutorial.md, which tests/test_docs_samples.py runs (pip install into a folder of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner
from consentcam.cli import main

# The tests that need the fetch the vendor writes; every other conformance test passes out of the box.
NEED_VENDOR_CODE = {
    "test_fetch_honours_the_window",
    "test_an_unreachable_camera_is_a_core_error",
    "test_core_fetches_an_approved_item_into_the_vault[sqlite]",
}


def test_scaffold_loads_and_passes_the_kit_except_its_placeholders(tmp_path: Path) -> None:
    project = tmp_path / "consentcam-acme-nvr"
    made = CliRunner().invoke(main, ["plugin", "new", "acme-nvr", "--path", str(project), "--json"])
    assert made.exit_code == 0, made.output
    files = {str(Path(f).relative_to(project)) for f in json.loads(made.output)["files"]}
    assert files == {"pyproject.toml", "README.md", "src/consentcam_acme_nvr/__init__.py",
                     "src/consentcam_acme_nvr/plugin.py", "tests/test_consentcam_acme_nvr_conformance.py"}

    pyproject = (project / "pyproject.toml").read_text()
    assert '[project.entry-points.consentcam]\nacme_nvr = "consentcam_acme_nvr.plugin:plugin"' in pyproject

    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CONSENTCAM_TEST_BACKENDS"))}
    env["PYTHONPATH"] = str(project / "src")
    # Not installed here, so the entry-point check is left out (the tutorial's run covers it).
    run = subprocess.run([sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                          "--deselect", "tests/test_consentcam_acme_nvr_conformance.py::TestAcmeNvrPluginConformance::"
                          "test_the_entry_point_loads_this_plugin"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=600)
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        outcomes[case.get("name", "")] = "passed" if problem is None else problem.tag
        messages[case.get("name", "")] = "" if problem is None else (problem.get("message", "") + (problem.text or ""))
    failed = {name for name, outcome in outcomes.items() if outcome != "passed"}
    assert outcomes and failed == NEED_VENDOR_CODE, run.stdout[-3000:]
    for name in failed:
        assert outcomes[name] == "failure" and "PLACEHOLDER" in messages[name], (name, messages[name][-800:])
    # What passes out of the box: the host's demands, the entry point, and consent at job time.
    for name in ("test_declares_itself_with_allowed_capabilities", "test_loads_in_a_strict_host",
                 "test_implements_what_its_capabilities_promise", "test_fetch_other_kinds_is_none",
                 "test_core_never_fetches_without_a_valid_grant_at_job_time[sqlite]"):
        assert outcomes.get(name) == "passed", (name, outcomes)


def test_scaffold_refuses_a_bad_name_and_a_folder_in_use(tmp_path: Path) -> None:
    bad = CliRunner().invoke(main, ["plugin", "new", "Acme NVR", "--path", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "lower-case" in bad.output and not (tmp_path / "x").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    used = CliRunner().invoke(main, ["plugin", "new", "acme", "--path", str(tmp_path / "used")])
    assert used.exit_code == 2 and "not empty" in used.output
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["keep.txt"]
