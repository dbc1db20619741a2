"""Live batches of one account that wait for each other are written together.

Batches of one account add to the same rollup rows, so a gateway writes them
one after the other (``Database.write(account_id)``). Rather than each
waiting for a turn of its own, the batches that arrive while one is being
written wait together, and the next turn writes them all in one transaction:
one stage, one statement per table, each rollup row they share written once.
Databases commit their log the same way (group commit). Nothing waits for a
group to fill: a batch that finds nobody writing is written at once, alone.

Each batch still gets its own answer (its accepted events and duplicates, an
event repeated across the group counting for the first batch that has it),
and stays all or nothing: a group commits or writes nothing. A group that
fails is written again batch by batch, so one batch's error (a value the
database refuses) is its own answer, not its neighbours'; a database that is
away or overloaded answers every batch of the group at once.

A batch that waits longer than the write queue allows without being taken
into a group leaves the queue with the write queue's own answer (503, retry
shortly), as a turn it waited for would; one that is taken is written even
if its request is gone meanwhile (a re-sent batch then counts as duplicates).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from meterql.errors import DatabaseUnavailable, MeterqlError

logger = logging.getLogger("meterql.db")

T = TypeVar("T")
R = TypeVar("R")

# A group's events at most: as many as one batch may hold, so a group costs a
# transaction no longer than the largest batch does.
GROUP_EVENTS = 10_000

# Writes a group's items in one transaction, an answer per item, in order.
Write = Callable[[list[T]], Awaitable[list[R]]]


@dataclass(eq=False, slots=True)
class _Waiting(Generic[T, R]):
    item: T
    size: int
    write: Write[T, R]
    answer: asyncio.Future[R]


class WriteGroups(Generic[T, R]):
    """Queues of items per key; each key's queue is written a group at a time.

    ``most`` bounds a group's summed sizes (a first item larger than that is
    a group alone); ``wait_s`` how long an item may wait to be taken.
    """

    def __init__(self, most: int, wait_s: float) -> None:
        self._most = most
        self._wait_s = wait_s
        self._waiting: dict[str, list[_Waiting[T, R]]] = {}
        # The group being written, per key (kept here so the task is not lost).
        self._writing: dict[str, asyncio.Task[None]] = {}

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken into a group."""
        return sum(len(queue) for queue in self._waiting.values())

    async def write(self, key: str, item: T, size: int, write: Write[T, R]) -> R:
        """Queue ``item`` under ``key`` and return its answer once its group is written.

        ``write`` is how this item's group is written if it comes first in it.
        """
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(item, size, write, answer)
        self._waiting.setdefault(key, []).append(waiting)
        if key not in self._writing:
            self._start(key)
        try:
            # Shielded: a timeout or a cancelled request must not cancel the
            # answer, which the group's task sets whether or not it is awaited.
            return await asyncio.wait_for(asyncio.shield(waiting.answer), self._wait_s)
        except TimeoutError:
            if self._leave(key, waiting):
                raise DatabaseUnavailable("Too many writes queued; retry shortly") from None
            return await waiting.answer  # taken meanwhile: being written
        except asyncio.CancelledError:
            self._leave(key, waiting)
            raise

    def _leave(self, key: str, waiting: _Waiting[T, R]) -> bool:
        """Take ``waiting`` out of its queue if no group has taken it; whether it was there."""
        queue = self._waiting.get(key, [])
        if waiting not in queue:
            return False
        queue.remove(waiting)
        if not queue:
            del self._waiting[key]
        return True

    def _start(self, key: str) -> None:
        """Write the next group of ``key``'s queue in a task of its own."""
        queue = self._waiting.pop(key)
        taken, size = 0, 0
        for waiting in queue:
            if taken and size + waiting.size > self._most:
                break
            taken += 1
            size += waiting.size
        group, rest = queue[:taken], queue[taken:]
        if rest:
            self._waiting[key] = rest
        task = asyncio.ensure_future(self._write_group(group))
        self._writing[key] = task
        task.add_done_callback(lambda task: self._next(key, group, task))

    def _next(self, key: str, group: list[_Waiting[T, R]], task: asyncio.Task[None]) -> None:
        """After a group: any answer its task left unset gets its failure; then the next group."""
        del self._writing[key]
        failure = None if task.cancelled() else task.exception()
        for waiting in group:
            if failure is not None:
                _settle(waiting.answer, error=failure)
            elif not waiting.answer.done():
                waiting.answer.cancel()
        if key in self._waiting:
            self._start(key)

    async def _write_group(self, group: list[_Waiting[T, R]]) -> None:
        write = group[0].write
        # Cancelled (the app is stopping), the task leaves its answers unset:
        # ``_next`` cancels them.
        try:
            answers = await write([waiting.item for waiting in group])
        except MeterqlError as error:
            # Unavailable or overloaded: nothing to do with any one batch, the
            # same answer for all.
            for waiting in group:
                _settle(waiting.answer, error=error)
            return
        except Exception as error:
            if len(group) == 1:
                _settle(group[0].answer, error=error)
                return
            logger.warning("a group of %d batches failed; writing them one by one", len(group))
            for waiting in group:
                try:
                    (answer,) = await write([waiting.item])
                except Exception as alone:
                    _settle(waiting.answer, error=alone)
                else:
                    _settle(waiting.answer, answer)
            return
        if len(answers) != len(group):  # a bug: every batch of the group fails, none hangs
            raise ValueError(f"{len(answers)} answers for a group of {len(group)}")
        for waiting, answer in zip(group, answers, strict=True):
            _settle(waiting.answer, answer)


def _settle(future: asyncio.Future[R], answer: R | None = None, *,
            error: BaseException | None = None) -> None:
    if future.done():  # nobody waits for it any more
        return
    if error is not None:
        future.set_exception(error)
        future.exception()  # retrieved: a request that left must not log it as lost
    else:
        future.set_result(answer)  # type: ignore[arg-type]


__all__ = ["GROUP_EVENTS", "Write", "WriteGroups"]
