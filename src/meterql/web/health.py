"""Probes: ``GET /healthz`` (the process answers) and ``GET /readyz`` (it can reach its database).

Neither needs a token, and neither says more than ``{"status": ...}``: a
probe answer is public, so why the database is away goes to the log only.
Liveness never touches the database: a database outage must not make an
orchestrator restart every gateway, only take them out of rotation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterql.db.engine import Database
from meterql.errors import DatabaseUnavailable

logger = logging.getLogger("meterql.web.health")

_NO_STORE = {"Cache-Control": "no-store"}


async def alive(_request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


def ready_endpoint(db: Database, timeout_s: float) -> Callable[[Request], Awaitable[Response]]:
    async def ready(_request: Request) -> Response:
        try:
            async with asyncio.timeout(timeout_s):
                await db.ping()
        except DatabaseUnavailable:
            pass  # the engine has logged why
        except TimeoutError:
            logger.warning("readiness check: no answer from the database in %ss", timeout_s)
        except Exception:
            # Not an outage we know, but not ready either; the traceback is for us.
            logger.exception("readiness check failed")
        else:
            return JSONResponse({"status": "ok"}, headers=_NO_STORE)
        return JSONResponse({"status": "unavailable"}, status_code=503, headers=_NO_STORE)

    return ready
