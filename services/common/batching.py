"""Group commit: many concurrent callers, one round trip.

A `Batcher` takes one item per caller and hands the items that are waiting together to one
handler call (one database transaction, one Redis pipeline), then gives each caller its own
result. There is no timer: an item submitted while fewer than `max_in_flight` batches are being
handled starts a batch at once (after the current turn of the event loop, so items submitted in
the same turn go together), so a lone caller waits no longer than it would alone; under load the
items that arrive while a batch is in flight form the next one. The cost of a round trip — the
statements, the transaction, the syscalls, and above all the Python around them — is paid once per
batch instead of once per caller.

A batch may also be bounded by weight (`weight` of each item, at most `max_weight` together; an
item heavier than that goes alone): e.g. bytes, under a message size limit.

The handler answers one entry per item, in order: a result, or an exception meant for that item's
caller alone. An exception raised by the handler itself reaches every caller of the batch.
A caller that is cancelled while waiting does not cancel the batch (other callers share it); its
result is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("cashback.batching")


class Batcher(Generic[T, R]):
    def __init__(self, handle: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]], *, name: str,
                 max_size: int = 256, max_in_flight: int = 1, weight: Callable[[T], int] | None = None,
                 max_weight: int = 0) -> None:
        if max_size < 1 or max_in_flight < 1:
            raise ValueError("max_size and max_in_flight must be at least 1")
        if (weight is None) != (max_weight <= 0):
            raise ValueError("weight and a positive max_weight go together")
        self._handle = handle
        self.name = name
        self._max_size = max_size
        self._max_in_flight = max_in_flight
        self._weight = weight
        self._max_weight = max_weight
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # handled so far, and their items: for tests and the logs
        self.items = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._in_flight < self._max_in_flight:
            self._start()
        return await future

    def _start(self) -> None:
        self._in_flight += 1
        task = asyncio.create_task(self._run(), name=f"batch:{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        # Taken when the task first runs, not when it was created: items submitted in the same
        # turn of the event loop join this batch.
        taken = self._take()
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        try:
            if batch:
                await self._deliver(batch)
        finally:
            self._in_flight -= 1
            if self._waiting and self._in_flight < self._max_in_flight:
                self._start()

    def _take(self) -> int:
        """How many of the waiting items the next batch takes (at least one)."""
        count = min(len(self._waiting), self._max_size)
        if self._weight is None:
            return count
        total = 0
        for i in range(count):
            total += self._weight(self._waiting[i][0])
            if total > self._max_weight and i > 0:
                return i
        return count

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._handle([item for item, _ in batch])
            if len(results) != len(batch):
                raise AssertionError(f"batch {self.name}: {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("batch %s of %d items failed: %s: %s", self.name, len(batch), type(exc).__name__, exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        """Waits for the batches in flight (for shutdown and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
