"""One access line and one set of metrics per request (written by ``web/edge.py``).

Every request gets them, a 404 and an escaping bug included: that one has
no answer yet when the edge middleware records it (Starlette's outermost
error middleware makes the 500), and is logged and counted as the 500 the
client gets.

The line (logger ``meterql.web.access``, fields for ``meterql.web.logs``) holds the
request id, method, route template, status, duration in ms and, once
known, the account and the GraphQL operation. Never a token, a query
string or a body. Probes and scrapes log at DEBUG unless they fail.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import Scope

from meterql.web.instruments import UNMATCHED, Instruments, method_label
from meterql.web.request_facts import RequestFacts
from meterql.web.request_ids import request_id

logger = logging.getLogger("meterql.web.access")

QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def route_template(scope: Scope) -> str:
    """The path pattern of the route that took the request (set by Starlette's router)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def record(
    instruments: Instruments, scope: Scope, status: int, duration_s: float, facts: RequestFacts
) -> None:
    """Count the answered request and write its access line."""
    route = route_template(scope)
    instruments.observe(route, scope["method"], status, duration_s, facts)
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
        if facts.answer_kept is not None:
            fields["answer_kept"] = facts.answer_kept
        if facts.batches:
            fields["events_accepted"] = facts.events_accepted
            fields["events_duplicate"] = facts.events_duplicate
        message = f"{fields['method']} {route} {status} {fields['duration_ms']}ms"
        # The record is made and handled directly: ``logger.log`` would also
        # walk the stack to name the calling line, which an access line
        # does not show.
        logger.handle(logger.makeRecord(
            logger.name, level, "", 0, message, (), None, extra={"fields": fields}))
