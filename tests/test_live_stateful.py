"""The live-feed state machine on each backend: invariant 3 (``emergency_only`` opens only inside an active
emergency covering the camera, ``never`` never) and revocation closing live views (invariant 2)."""

from pathlib import Path

import pytest
from consentcam.testing.live_stateful import run_live_machine


@pytest.mark.usefixtures("fast_passwords")  # every example registers accounts in a fresh database
def test_live_machine(consentcam_backend: str, tmp_path: Path) -> None:
    tally = run_live_machine(consentcam_backend, tmp_path, examples=10, steps=30)
    print(f"\nlive machine on {consentcam_backend}: {tally.steps} steps in {tally.examples} examples; "
          f"opened {tally.opened}, refused {tally.refused}, closed by the sweep {tally.swept}")
    assert tally.steps >= 180
    # It proves something only if views opened, were refused by each rule, and were closed by a change.
    assert tally.opened >= 5 and tally.swept >= 2, tally
    assert {"live_never", "live_emergency_only"} <= set(tally.refused), tally
