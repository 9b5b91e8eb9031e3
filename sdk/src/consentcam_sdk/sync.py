"""``Client``: the async client, driven from plain code. It owns a private event loop on a daemon thread, so it
also works where a loop is already running (notebooks, other frameworks)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Iterator
from typing import Any

from .client import AsyncClient


class Client:
    """Every ``AsyncClient`` method, blocking; ``iter_*`` methods return plain iterators."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="consentcam-sdk", daemon=True)
        self._thread.start()
        self._async = self._run(self._make(base_url, options))

    @staticmethod
    async def _make(base_url: str, options: dict[str, Any]) -> AsyncClient:
        return AsyncClient(base_url, **options)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._async, name)
        if inspect.isasyncgenfunction(target):
            @functools.wraps(target)
            def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
                agen = target(*args, **kwargs)
                try:
                    while True:
                        try:
                            yield self._run(agen.__anext__())
                        except StopAsyncIteration:
                            return
                finally:
                    self._run(agen.aclose())
            return iterate
        if inspect.iscoroutinefunction(target):
            @functools.wraps(target)
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._run(target(*args, **kwargs))
            return call
        return target

    @property
    def token(self) -> str | None:
        return self._async.token

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
