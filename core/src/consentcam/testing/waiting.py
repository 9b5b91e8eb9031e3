"""Waiting, in tests, for what another process or task does: poll a condition until it holds or the time is up."""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def until(check: Any, timeout: float, message: Any, interval: float = 0.05) -> None:
    """Call ``check`` (a function, which may return an awaitable) until its result is true; after ``timeout``
    seconds fail with ``message`` (a string, or a function making one from what is known by then)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        await asyncio.sleep(interval)
