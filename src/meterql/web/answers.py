"""Answers kept under their tags: the same request, unchanged account, no second execution.

An answer's ETag (``web/etags.py``) is made of everything the answer depends
on: the account's data version (read in the request's first round trip,
with its token), the request, the clock down to what any answer can show,
and the serving code and settings. A conditional GET is answered 304 on it;
this keeps the answer itself, so the next request for it, from any client
of the account, is answered from memory after that first round trip,
without running its document:

- a kept answer can never be older than the last accepted event: a write
  replaces the account's version in its own transaction, and a request
  that starts after the write was accepted reads the new version, which
  names no kept answer;
- nor outlive a token: the token is checked first, on every request;
- the key holds the token's scopes besides the tag (two tokens of one
  account may see different answers) and, for a GraphQL POST, the body and
  the headers the GraphQL view reads (its media type and what it accepts);
- only whole answers are kept: a 200 without GraphQL errors, of one query
  (never a mutation), within the size bound.

Each worker keeps its own, bounded by bytes (``answer_cache_mb``), least
recently used first out; an answer larger than a sixteenth of the bound
is not kept, so one large answer cannot empty it. Nothing is copied on the
way out: the bytes are sent as they were kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from starlette.responses import Response

# An entry's bookkeeping besides its bytes (key, tuple, dictionary slot), so
# that many small answers count for what they hold.
_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """A kept answer: its bytes, their Content-Type, and what its execution told the request
    record (a GraphQL query's operation name; ``None`` for a ``/v1`` route's)."""

    body: bytes
    content_type: str  # the header as first sent
    operation: str | None = None

    @property
    def cost(self) -> int:
        """What keeping it counts against the bound: its bytes and its bookkeeping."""
        return len(self.body) + _OVERHEAD


class Answers:
    """One worker's kept answers, at most ``capacity`` bytes of them (0: none kept)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.largest = capacity // 16
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._kept: OrderedDict[bytes, Answer] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def get(self, key: bytes) -> Answer | None:
        found = self._kept.get(key)
        if found is None:
            self.misses += 1
            return None
        self._kept.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: bytes, answer: Answer) -> None:
        if answer.cost > self.largest:
            return
        replaced = self._kept.pop(key, None)
        if replaced is not None:
            self.size -= replaced.cost
        self._kept[key] = answer
        self.size += answer.cost
        while self.size > self.capacity:
            _, dropped = self._kept.popitem(last=False)
            self.size -= dropped.cost


def answer_key(etag: str, scopes: frozenset[str], *parts: bytes) -> bytes:
    """The key of the answer tagged ``etag`` for a token with ``scopes``; ``parts``: what
    else the answer is read from (a GraphQL request's headers and body)."""
    digest = hashlib.blake2b(etag.encode(), digest_size=20)
    digest.update(b"\0" + ",".join(sorted(scopes)).encode())
    for part in parts:
        # Length first: no two lists of parts run together into the same bytes.
        digest.update(b"\0%d\0" % len(part) + part)
    return digest.digest()


def kept_response(answer: Answer, etag: str | None) -> Response:
    """A kept answer as it was first sent: its bytes, its Content-Type, and its tag if any."""
    headers = {"content-type": answer.content_type}
    if etag is not None:
        headers["etag"] = etag
    return Response(answer.body, headers=headers)
