"""The pacer lets a bounded number of callers through per event-loop iteration, in order."""

from __future__ import annotations

import asyncio

from provider.pacing import Pacer


async def test_at_most_per_tick_callers_per_iteration_in_order() -> None:
    pacer = Pacer(8)
    loop = asyncio.get_running_loop()
    iteration = 0
    stop = False

    def count() -> None:
        nonlocal iteration
        iteration += 1
        if not stop:
            loop.call_soon(count)

    loop.call_soon(count)
    passed: list[tuple[int, int]] = []

    async def caller(n: int) -> None:
        await pacer.turn()
        passed.append((n, iteration))

    await asyncio.gather(*(caller(n) for n in range(100)))
    stop = True
    assert [n for n, _ in passed] == list(range(100))
    per_iteration: dict[int, int] = {}
    for _, it in passed:
        per_iteration[it] = per_iteration.get(it, 0) + 1
    assert max(per_iteration.values()) <= 8
    assert len(per_iteration) >= 100 // 8
    assert pacer.waiting == 0


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    pacer = Pacer(1)
    first = asyncio.ensure_future(pacer.turn())
    second = asyncio.ensure_future(pacer.turn())
    third = asyncio.ensure_future(pacer.turn())
    await asyncio.sleep(0)
    second.cancel()
    await asyncio.wait_for(asyncio.gather(first, third), 1)
    assert second.cancelled()
