"""The SDK stands alone: it requires nothing of the core and imports no module of it."""

from __future__ import annotations

import ast
import re
from importlib.metadata import requires
from pathlib import Path

import consentcam_sdk
from consentcam_sdk.client import OPERATIONS

PACKAGE = Path(consentcam_sdk.__file__).parent


def test_installed_requirements_name_no_core() -> None:
    needed = [r for r in requires("consentcam-sdk") or [] if "extra ==" not in r]
    assert {re.split(r"[ <>=!;\[]", r, maxsplit=1)[0].lower() for r in needed} == {"aiohttp", "pydantic"}


def test_no_module_imports_the_core() -> None:
    imported = []
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                imported += [(source.name, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.append((source.name, node.module))
    assert imported, "the scan found no imports at all"
    assert [(f, name) for f, name in imported if name == "consentcam" or name.startswith("consentcam.")] == []


def test_every_path_the_client_calls_is_declared_for_the_agreement_test() -> None:
    source = (PACKAGE / "client.py").read_text()
    called = set(re.findall(r'"(/api/v1/[^"]*)"', source)) | {
        re.sub(r"{[^}]*}", "{}", p) for p in re.findall(r'f"(/api/v1/[^"]*)"', source)}
    declared = {re.sub(r"{[^}]*}", "{}", path) for _, path, _ in OPERATIONS} | {"/api/v1/openapi.json"}
    assert {re.sub(r"{[^}]*}", "{}", p) for p in called} - declared == set()
