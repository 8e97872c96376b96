"""Shutting down lab responders served from a test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from lab.responders.base import Responder


async def stop_all(responders: Iterable[Responder]) -> None:
    """Stop the responders, then every other task on the running loop.

    Cancelled again until they are done: on Python 3.11, wait_for() swallows a
    cancellation that lands just as its inner read completes (gh-86296), and a
    keep-alive handler would then wait out its whole read timeout.
    """
    for r in responders:
        with contextlib.suppress(Exception):
            await r.stop()
    pending = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
