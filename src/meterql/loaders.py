"""Per-request DataLoaders: how nested fields read, one statement per kind of data.

A field of a node in a list (a subscription's ``tier``, a node's
``siteLimit``) asks its request's loader for one key and gets the value;
the loader gathers the keys asked for in the same tick and calls its batch
function once with all of them. A list of N nodes then costs one statement,
not N. The batch functions themselves are in ``meterql.resolvers.batches``;
this module is only the mechanism, and knows nothing of what it loads.

A request's :class:`Loaders` hold their owner (the request's context) by a
weak reference: a context holds its loaders, and a strong reference back
would make every request a cycle that only the garbage collector frees,
caches full of answers included.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar, cast

from strawberry.dataloader import DataLoader

C = TypeVar("C")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
# A batch function: the request's context and the keys asked for, to one
# result per key, in the keys' order.
BatchFn = Callable[[C, list[K]], Awaitable[Sequence[V]]]


class Loaders(Generic[C]):
    """The request's DataLoaders, one per batch function, made on first use.

    Made with the request's context (the REST compat layer's and
    ``/graphql``'s alike), so a loader's cache lives exactly as long as one
    request: nothing cached is ever seen by another request or account.
    """

    __slots__ = ("_loaders", "_owner")

    def __init__(self, owner: C) -> None:
        self._owner = weakref.ref(owner)
        self._loaders: dict[object, DataLoader[Any, Any]] = {}

    def of(self, batch: BatchFn[C, K, V]) -> DataLoader[K, V]:
        loader = self._loaders.get(batch)
        if loader is None:
            owner = self._owner

            async def load(keys: list[K]) -> Sequence[V]:
                context = owner()
                # Loaders are used only while their request runs, which holds it.
                assert context is not None, "a loader outlived its request"
                return await batch(context, keys)

            loader = self._loaders[batch] = DataLoader(load_fn=load)
        return cast(DataLoader[K, V], loader)

    def load(self, batch: BatchFn[C, K, V], key: K) -> Awaitable[V]:
        # Every field asking the same key awaits one future. graphql-core
        # cancels the rest of a list whose item failed; cancelling one of those
        # fields must not cancel the future under the others (a cancelled
        # task cancels the future it awaits, unless shielded).
        return asyncio.shield(self.of(batch).load(key))

    def clear(self) -> None:
        """Forget every loader and what it cached: the request is over."""
        self._loaders.clear()
