"""One access line and one set of metrics per request.

Pure ASGI, so streaming answers stay streaming. It sits inside the request
id middleware (the id is known) and outside routing and the endpoints, so
it sees every request, a 404 and an escaping bug included: that one has no
answer yet when it passes here (Starlette's outermost error middleware
makes the 500), and is logged and counted as the 500 the client gets.

The line (logger ``meterql.web.access``, fields for ``meterql.web.logs``) holds the
request id, method, route template, status, duration in ms and, once
known, the account and the GraphQL operation. Never a token, a query
string or a body. Probes and scrapes log at DEBUG unless they fail.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterql.web import request_facts
from meterql.web.instruments import UNMATCHED, Instruments, method_label
from meterql.web.request_ids import request_id

logger = logging.getLogger("meterql.web.access")

QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def route_template(scope: Scope) -> str:
    """The path pattern of the route that took the request (set by Starlette's router)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class AccessMiddleware:
    def __init__(self, app: ASGIApp, instruments: Instruments) -> None:
        self.app = app
        self.instruments = instruments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        facts = request_facts.start(scope)
        started = time.perf_counter()
        # What the client gets if an exception escapes before an answer starts.
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            duration_s = time.perf_counter() - started
            route = route_template(scope)
            self.instruments.observe(route, scope["method"], status, duration_s, facts)
            level = logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO
            if logger.isEnabledFor(level):
                fields: dict[str, Any] = {
                    "request_id": request_id(scope),
                    "method": method_label(scope["method"]),
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration_s * 1000, 1),
                }
                if facts.account_id is not None:
                    fields["account_id"] = facts.account_id
                if facts.operation_type is not None:
                    # Truncated, not bounded: a log line may name anything, briefly.
                    fields["operation"] = (facts.operation_name or "")[:128] or None
                    fields["operation_type"] = facts.operation_type
                if facts.batches:
                    fields["events_accepted"] = facts.events_accepted
                    fields["events_duplicate"] = facts.events_duplicate
                message = f"{fields['method']} {route} {status} {fields['duration_ms']}ms"
                logger.log(level, message, extra={"fields": fields})
