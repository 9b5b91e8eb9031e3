#!/usr/bin/env python3
"""Write docs/vendors/hooks.md from the hook specifications (their signatures and docstrings).

Run after changing core/src/consentcam/hookspecs.py; tests/test_docs_hooks.py fails while the page is stale.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from consentcam import hookspecs

HEADER = """# Hook reference

Every hook a ConsentCam plugin may implement, generated from `consentcam/hookspecs.py` by
`scripts/hook_docs.py` (a test fails when this page and the specifications disagree). Import `hookimpl`
and the error classes from `consentcam`; the typed values are in `consentcam.hooktypes`. A hook marked
*first result* stops at the first implementation that returns something other than `None`. Async hooks are
coroutine functions: the host awaits them.
"""


def hooks() -> list[tuple[str, object]]:
    return [(name, fn) for name, fn in vars(hookspecs).items() if name.startswith("consentcam_") and callable(fn)]


def signature(name: str, fn: object) -> str:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    prefix = "async " if inspect.iscoroutinefunction(fn) else ""
    return f"{prefix}{name}{sig}".replace("'", "")


def render() -> str:
    parts = [HEADER]
    for name, fn in hooks():
        first = getattr(fn, "consentcam_spec", {}).get("firstresult", False)
        parts.append(f"## `{signature(name, fn)}`\n")
        if first:
            parts.append("*First result.*\n")
        parts.append(inspect.cleandoc(fn.__doc__ or "") + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "vendors" / "hooks.md"
    target.write_text(render())
    print(f"wrote {target}", file=sys.stderr)
