"""services/common/batching.py: callers that arrive together share a handler call; each gets its own
answer; a lone caller is handled at once."""

from __future__ import annotations

import asyncio

import pytest

from services.common.batching import Batcher


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def handle(self, items: list[int]) -> list[int | BaseException]:
        self.calls.append(list(items))
        await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_caller_is_handled_at_once_and_alone():
    rec = Recorder()
    batcher = Batcher(rec.handle, name="t")
    assert await batcher.submit(2) == 20
    assert rec.calls == [[2]]


async def test_callers_arriving_while_a_batch_is_in_flight_go_together_in_order():
    rec = Recorder()
    rec.gate.clear()
    batcher = Batcher(rec.handle, name="t", max_in_flight=1)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)  # the first batch starts, with one item, and waits on the gate
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    assert rec.calls == [[0]]
    rec.gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [20, 40, 60]
    assert rec.calls == [[0], [2, 4, 6]]
    assert (batcher.batches, batcher.items) == (2, 4)


async def test_each_caller_gets_its_own_error_and_the_others_their_results():
    rec = Recorder()
    batcher = Batcher(rec.handle, name="t")
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 1"
    assert isinstance(results[3], ValueError) and str(results[3]) == "odd 3"
    assert rec.calls == [[0, 1, 2, 3]]  # submitted in one turn of the loop: one batch


async def test_a_failing_handler_fails_every_caller_of_its_batch_and_the_next_batch_still_runs():
    calls = []

    async def handle(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise ConnectionError("down")
        return items

    batcher = Batcher(handle, name="t")
    failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(f, ConnectionError) for f in failed)
    assert await batcher.submit(3) == 3


async def test_batches_are_capped_and_several_may_be_in_flight():
    rec = Recorder()
    rec.gate.clear()
    batcher = Batcher(rec.handle, name="t", max_size=3, max_in_flight=2)
    tasks = [asyncio.create_task(batcher.submit(i * 2)) for i in range(8)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert [len(c) for c in rec.calls] == [3, 3]  # two in flight, two items waiting
    rec.gate.set()
    assert await asyncio.gather(*tasks) == [i * 20 for i in range(8)]
    assert [len(c) for c in rec.calls] == [3, 3, 2]


async def test_a_cancelled_caller_does_not_cancel_the_batch_of_the_others():
    rec = Recorder()
    rec.gate.clear()
    batcher = Batcher(rec.handle, name="t")
    a, b = asyncio.create_task(batcher.submit(2)), asyncio.create_task(batcher.submit(4))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    a.cancel()
    rec.gate.set()
    assert await b == 40
    with pytest.raises(asyncio.CancelledError):
        await a
    await batcher.drain()


async def test_a_handler_answering_the_wrong_number_of_results_fails_loudly():
    async def handle(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = Batcher(handle, name="t")
    with pytest.raises(AssertionError, match="1 results for 2 items"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))


async def test_a_batch_bounded_by_weight_takes_what_fits_and_a_heavy_item_goes_alone():
    rec = Recorder()
    rec.gate.clear()
    batcher = Batcher(rec.handle, name="t", max_in_flight=1, weight=lambda i: i, max_weight=10)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(i)) for i in (4, 6, 2, 40, 8)]
    await asyncio.sleep(0)
    rec.gate.set()
    await asyncio.gather(first, *rest, return_exceptions=True)
    assert rec.calls == [[0], [4, 6], [2], [40], [8]]
