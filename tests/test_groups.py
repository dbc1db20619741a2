"""Write groups (``db/groups.py``): what waits together is written together, each its own answer."""

from __future__ import annotations

import asyncio

import pytest

from meterql import ingest
from meterql.db.groups import GROUP_EVENTS, WriteGroups
from meterql.errors import DatabaseUnavailable


class Store:
    """A write function that records each group and can be held before writing."""

    def __init__(self, fail: set[str] | None = None, error: BaseException | None = None) -> None:
        self.groups: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail or set()  # items whose presence fails a write
        self.error = error  # what every write raises, if set

    async def write(self, items: list[str]) -> list[str]:
        self.groups.append(list(items))
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        if self.fail & set(items):
            raise ValueError(f"refused: {sorted(self.fail & set(items))}")
        return [f"wrote {item}" for item in items]


async def settle() -> None:
    """Let every task run until it waits."""
    for _ in range(5):
        await asyncio.sleep(0)


async def held_then(groups: WriteGroups[str, str], store: Store, key: str,
                    items: list[str], sizes: list[int] | None = None) -> list[asyncio.Task[str]]:
    """The first item's write held while the others queue behind it; their tasks."""
    store.gate.clear()
    sizes = sizes or [1] * len(items)
    tasks = [asyncio.ensure_future(groups.write(key, item, size, store.write))
             for item, size in zip(items, sizes, strict=True)]
    await settle()
    return tasks


async def test_items_that_wait_together_are_written_together() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    store = Store()
    tasks = await held_then(groups, store, "acme", ["a", "b", "c", "d"])
    assert store.groups == [["a"]]  # the first is written at once, alone
    assert groups.waiting == 3
    store.gate.set()
    assert await asyncio.gather(*tasks) == ["wrote a", "wrote b", "wrote c", "wrote d"]
    assert store.groups == [["a"], ["b", "c", "d"]]
    assert groups.waiting == 0


async def test_a_lone_item_is_written_at_once() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    store = Store()
    assert await groups.write("acme", "a", 1, store.write) == "wrote a"
    assert await groups.write("acme", "b", 1, store.write) == "wrote b"
    assert store.groups == [["a"], ["b"]]


async def test_keys_do_not_wait_for_each_other() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    held, other = Store(), Store()
    tasks = await held_then(groups, held, "acme", ["a1", "a2"])
    assert await groups.write("globex", "g1", 1, other.write) == "wrote g1"
    assert other.groups == [["g1"]]
    held.gate.set()
    assert await asyncio.gather(*tasks) == ["wrote a1", "wrote a2"]


@pytest.mark.parametrize(("sizes", "written"), [
    ([1, 4, 4, 4], [["a"], ["b", "c"], ["d"]]),  # 8 fit, 12 do not
    ([1, 9, 1, 1], [["a"], ["b"], ["c", "d"]]),  # one too large still goes, alone
    ([1, 2, 3, 3], [["a"], ["b", "c", "d"]]),  # exactly the most
])
async def test_a_group_holds_at_most_its_size(sizes: list[int], written: list[list[str]]) -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=8, wait_s=5)
    store = Store()
    tasks = await held_then(groups, store, "acme", ["a", "b", "c", "d"], sizes)
    store.gate.set()
    await asyncio.gather(*tasks)
    assert store.groups == written


async def test_a_failed_group_is_written_again_one_by_one() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    store = Store(fail={"c"})
    tasks = await held_then(groups, store, "acme", ["a", "b", "c", "d"])
    store.gate.set()
    answers = await asyncio.gather(*tasks, return_exceptions=True)
    assert answers[:2] == ["wrote a", "wrote b"] and answers[3] == "wrote d"
    assert isinstance(answers[2], ValueError) and "refused: ['c']" in str(answers[2])
    assert store.groups == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]


async def test_an_unavailable_database_answers_the_whole_group_at_once() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    store = Store(error=DatabaseUnavailable())
    tasks = await held_then(groups, store, "acme", ["a", "b", "c"])
    store.gate.set()
    answers = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(answer, DatabaseUnavailable) for answer in answers)
    assert store.groups == [["a"], ["b", "c"]]  # no retry one by one


async def test_an_item_that_waits_too_long_leaves_unwritten() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=0.05)
    store = Store()
    tasks = await held_then(groups, store, "acme", ["a", "b"])
    with pytest.raises(DatabaseUnavailable, match="retry shortly"):
        await tasks[1]
    assert groups.waiting == 0
    store.gate.set()
    assert await tasks[0] == "wrote a"  # taken before the time ran out: written
    await settle()
    assert store.groups == [["a"]]


async def test_a_cancelled_item_is_not_written() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    store = Store()
    tasks = await held_then(groups, store, "acme", ["a", "b", "c"])
    tasks[1].cancel()
    await settle()
    assert groups.waiting == 1
    store.gate.set()
    assert await tasks[0] == "wrote a" and await tasks[2] == "wrote c"
    assert tasks[1].cancelled()
    assert store.groups == [["a"], ["c"]]


async def test_an_item_taken_into_a_group_is_written_though_its_waiter_left() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    store = Store()
    tasks = await held_then(groups, store, "acme", ["a"])
    tasks[0].cancel()  # the request is gone; its group is being written
    await settle()
    store.gate.set()
    await settle()
    assert store.groups == [["a"]]
    assert await groups.write("acme", "b", 1, store.write) == "wrote b"  # the queue goes on


def test_a_group_holds_no_more_events_than_the_largest_batch() -> None:
    # So a group's transaction is never longer than one batch's may be.
    assert GROUP_EVENTS == ingest.MAX_EVENTS


async def test_a_write_that_breaks_its_promise_fails_its_items_rather_than_leaving_them() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)

    async def short(items: list[str]) -> list[str]:
        return ["only one"]  # one answer for two items: a bug, not a hang

    store = Store()
    first = await held_then(groups, store, "acme", ["a"])
    rest = [asyncio.ensure_future(groups.write("acme", item, 1, short)) for item in ("b", "c")]
    await settle()
    store.gate.set()
    assert await first[0] == "wrote a"
    answers = await asyncio.wait_for(asyncio.gather(*rest, return_exceptions=True), 2)
    assert all(isinstance(answer, ValueError) for answer in answers)
    assert await groups.write("acme", "d", 1, store.write) == "wrote d"  # the queue goes on


async def test_a_group_cancelled_with_the_app_cancels_its_items_and_the_queue_goes_on() -> None:
    groups: WriteGroups[str, str] = WriteGroups(most=100, wait_s=5)
    store = Store()
    tasks = await held_then(groups, store, "acme", ["a", "b"])
    groups._writing["acme"].cancel()  # the app stops while "a" is written
    store.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2)
    assert isinstance(answers[0], asyncio.CancelledError)
    assert answers[1] == "wrote b"  # the next group is written
