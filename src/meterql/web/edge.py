"""The one middleware every HTTP request passes through: its id, compression, access line.

Three concerns, one layer. Each layer of ASGI middleware costs every
request a coroutine and a wrapped ``send`` for each message: as three
layers, these cost the summary route a fifth of its requests per second
under load; as one, its event-loop time in-process went from 0.50 to
0.46 ms (``docs/performance.md``). Each concern's rules stay in its own
module; this puts them in order:

1. the request id is taken or made (``request_ids``), and a record of what
   the request turns out to be is started (``request_facts``), so that
   everything after can name the request;
2. the answer's start gets the id's header and its status is noted;
3. then compression (``compression``), if the client asked for it;
4. once the answer is sent, or an exception escaped before it started, the
   request is counted and logged (``access``).

Pure ASGI, so streaming answers stay streaming.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterql.web import access, request_facts, request_ids
from meterql.web.compression import Compressing, encoding_for
from meterql.web.instruments import Instruments


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, instruments: Instruments) -> None:
        self.app = app
        self.instruments = instruments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_ids.assign(scope)
        facts = request_facts.start(scope)
        started = time.perf_counter()
        encoding = encoding_for(scope)
        out: Send = send if encoding is None else Compressing(send, encoding)
        # What the client gets if an exception escapes before an answer starts.
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[request_ids.HEADER] = rid
            await out(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access.record(self.instruments, scope, status, time.perf_counter() - started, facts)
