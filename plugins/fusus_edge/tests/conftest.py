"""Argon2 at its cheapest for these tests: each rig registers several accounts, and password hashing is not what
they test (the core's suite covers it)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    from argon2 import PasswordHasher
    from consentcam import security

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    dummy = cheap.hash("never-a-password")
    monkeypatch.setattr(security, "_hasher", cheap)
    monkeypatch.setattr(security, "_dummy_hash", lambda: dummy)
