"""Request ids: taken from ``X-Request-ID`` or made, kept in the scope, echoed (``web/edge.py``).

A client (or the proxy in front of us) that sends an id gets answers and log
lines under that id, so one request can be followed across services. An id
is only taken if it is short and plain (letters, digits, ``-``, ``_``,
``.``, ``:``); anything else is replaced, so a header can never smuggle
control characters or a megabyte into our logs.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import Scope

HEADER = "x-request-id"
MAX_LENGTH = 128
_PLAIN = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
_HEADER_BYTES = HEADER.encode()
_SCOPE_KEY = "meterql_request_id"


def request_id(scope: Scope) -> str:
    """The id of the request ``scope`` belongs to ("" outside the middleware)."""
    state = scope.get("state") or {}
    value = state.get(_SCOPE_KEY, "")
    return value if isinstance(value, str) else ""


def _accepted(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _PLAIN.fullmatch(text) else None


def assign(scope: Scope) -> str:
    """The request's id: the one it was sent with if plain enough, else a new one; kept in scope."""
    sent = next((v for k, v in scope["headers"] if k == _HEADER_BYTES), None)
    rid = _accepted(sent) or uuid.uuid4().hex
    scope.setdefault("state", {})[_SCOPE_KEY] = rid
    return rid
