"""The documentation site builds with MkDocs in strict mode: any warning (a broken link or anchor, a page missing
from the nav, a nav entry without a page) fails the suite, so CI builds the docs with warnings as errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mkdocs_build_is_strict_and_clean(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                          "--site-dir", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    problems: list[str] = []
    for line in run.stderr.splitlines():  # a warning, and the indented lines that continue it (e.g. page names)
        if line.startswith(("WARNING", "ERROR")) or (problems and line.startswith(" ")):
            problems.append(line)
    hint = ("\nA page that is not in the nav: add it under its section in mkdocs.yml (or to not_in_nav there, "
            "with a reason).") if any("not included in the \"nav\"" in p for p in problems) else ""
    assert run.returncode == 0 and not problems, "\n".join(problems or [run.stderr[-3000:]]) + hint
    assert (site / "index.html").is_file() and (site / "vendors" / "hooks" / "index.html").is_file()
