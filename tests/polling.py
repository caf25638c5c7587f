"""The one way tests wait for something that happens asynchronously (an outbox delivery, a job,
a restarted process): bounded polling. No timing is asserted: the bound only turns a condition
that never comes into a failure instead of a hang, and is generous because the machine is shared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, seconds: float = 30, interval: float = 0.1,
                     what: str = "condition") -> T:
    """Calls `probe` until it answers something truthy, and answers that."""
    deadline = time.monotonic() + seconds
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds:g} s")
        await asyncio.sleep(interval)
