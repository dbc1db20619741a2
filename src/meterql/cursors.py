"""Opaque cursors of keyset pagination: base64 of what the list was and where a page ended.

A cursor names its list (``instances``), the filter it was made under and
the sort key of its row. Handed back with another filter it is refused:
"after instance X among the running ones" means nothing among the stopped
ones, and answering anyway would silently skip or repeat rows. Cursors are
not signed: one names nothing but a position in the caller's own list, and
a forged one only starts a page of the caller's own rows elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import json

from meterql.errors import InvalidInput
from meterql.records import is_valid_id

# A filter and a key of 200 characters each, base64'd, fit in well under this.
_MAX_CURSOR_CHARS = 2048


def encode(kind: str, filter_value: str | None, key: str) -> str:
    payload = json.dumps([kind, filter_value, key], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii")


def _refuse(message: str) -> InvalidInput:
    # The cursor is not echoed: the client has it, and it may hold anything.
    return InvalidInput(
        f"after: {message}", [{"type": "value_error", "loc": ["after"], "msg": message}]
    )


def decode(cursor: str, kind: str, filter_value: str | None) -> str:
    """The sort key in ``cursor``; :class:`InvalidInput` unless it is one of this very list's."""
    try:
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError
        raw = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
        payload = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise _refuse("Invalid cursor") from None
    if not (
        isinstance(payload, list)
        and len(payload) == 3
        and payload[0] == kind
        and (payload[1] is None or isinstance(payload[1], str))
        and isinstance(payload[2], str)
        and is_valid_id(payload[2])
    ):
        raise _refuse("Invalid cursor")
    if payload[1] != filter_value:
        raise _refuse("The cursor belongs to a list with another status filter")
    key: str = payload[2]
    return key
