"""The hook reference cannot fall behind the specifications (datasette's habit): every hook has a heading
with its exact signature, the page is what the generator writes, and every hook has a test of its own."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("hook_docs", ROOT / "scripts" / "hook_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_hook_is_documented_with_its_exact_signature():
    gen = _generator()
    page = (ROOT / "docs" / "vendors" / "hooks.md").read_text()
    headings = set(re.findall(r"^## `(.+)`$", page, flags=re.M))
    for name, fn in gen.hooks():
        assert gen.signature(name, fn) in headings, f"{name} is undocumented or its signature changed: run scripts/hook_docs.py"


def test_the_reference_page_is_what_the_generator_writes():
    assert (ROOT / "docs" / "vendors" / "hooks.md").read_text() == _generator().render()


def test_every_hook_is_exercised_by_a_test():
    """A hook that no test calls is a hook nobody knows works."""
    gen = _generator()
    sources = "\n".join(p.read_text() for p in ROOT.glob("**/test_*.py") if ".venv" not in p.parts)
    for name, _ in gen.hooks():
        if name == "consentcam_plugin_info":
            continue
        short = name.removeprefix("consentcam_")
        assert re.search(rf"\b({name}|{short}|{short}_named)\b", sources), f"no test exercises {name}"
