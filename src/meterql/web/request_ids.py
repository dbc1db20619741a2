"""Request ids: taken from ``X-Request-ID`` or made, kept in the scope, echoed.

A client (or the proxy in front of us) that sends an id gets answers and log
lines under that id, so one request can be followed across services. An id
is only taken if it is short and plain (letters, digits, ``-``, ``_``,
``.``, ``:``); anything else is replaced, so a header can never smuggle
control characters or a megabyte into our logs.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
MAX_LENGTH = 128
_PLAIN = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
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


class RequestIdMiddleware:
    """Pure ASGI, so streaming answers stay streaming."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope["headers"] if k == HEADER.encode()), None)
        rid = _accepted(sent) or uuid.uuid4().hex
        scope.setdefault("state", {})[_SCOPE_KEY] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)
