"""Request bodies: bounded reading and JSON decoding with FastAPI's 422 shapes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from starlette.requests import ClientDisconnect, Request

from meterql.errors import InvalidInput, PayloadTooLarge, RequestTimeout


@dataclass(frozen=True)
class JsonBody:
    """A JSON body that becomes one GraphQL variable.

    ``coerce`` validates the decoded document (raising ``InvalidInput`` with
    ``loc`` rooted at ``"body"``) against the request's instant and the
    oldest instant an event may have (if any), and returns the variable's value.
    """

    variable: str
    max_bytes: int
    coerce: Callable[[Any, datetime, datetime | None], Any]


# How much of a refused body is read and thrown away so that the client, once
# done sending, can read the 413 (a server that closes with unread bytes makes
# the kernel reset the connection, and a client that sends its whole body
# before reading, as Python's urllib does, then sees only "connection reset").
# Past this much, the answer goes out and the connection is closed.
DISCARD_LIMIT_BYTES = 64 * 1024 * 1024


class ClientGone(Exception):
    """The client closed the connection before its body arrived: nobody to answer."""


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The body, at most ``max_bytes`` of it, arrived whole within ``timeout_s``.

    Raises :class:`PayloadTooLarge` for a body over the limit (by its
    ``Content-Length`` or as it arrives), :class:`RequestTimeout` when it
    has not all arrived in time, :class:`ClientGone` when the client left.
    Nothing else is held meanwhile: callers read the body before they take
    a database connection, or give theirs back first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        if int(declared) <= DISCARD_LIMIT_BYTES:
            await _discard(request, 0, deadline)
        raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    break
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout() from None
    except ClientDisconnect:
        raise ClientGone() from None
    if size > max_bytes:
        del chunks
        await _discard(request, size, deadline)
        raise PayloadTooLarge()
    return b"".join(chunks)


async def _discard(request: Request, received: int, deadline: float) -> None:
    """Read and drop the rest of a refused body, within the limits above; never raises."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return  # the client waits for our word before sending: it gets the 413 instead
    with contextlib.suppress(TimeoutError, ClientDisconnect, RuntimeError):
        async with asyncio.timeout_at(deadline):
            async for chunk in request.stream():
                received += len(chunk)
                if received > DISCARD_LIMIT_BYTES:
                    return


def _missing() -> InvalidInput:
    return InvalidInput(
        "Field required",
        [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}],
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(raw: bytes) -> Any:
    """The decoded body, as FastAPI decoded it: an empty or ``null`` body is missing."""
    if not raw:
        raise _missing()
    try:
        # Decimals, not floats: a cost must not lose digits on the way in.
        # NaN and Infinity are not JSON, whatever Python's decoder allows.
        document = json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
    except json.JSONDecodeError as error:
        raise _invalid(error.pos, error.msg) from None
    except UnicodeDecodeError as error:
        raise _invalid(error.start, error.reason) from None
    except (ValueError, RecursionError) as error:
        # A NaN literal, or nesting deeper than the decoder's stack.
        raise _invalid(0, str(error) or type(error).__name__) from None
    if document is None:
        raise _missing()
    return document


def _invalid(position: int, reason: str) -> InvalidInput:
    return InvalidInput(
        "JSON decode error",
        [{"type": "json_invalid", "loc": ["body", position], "msg": "JSON decode error",
          "input": {}, "ctx": {"error": reason}}],
    )
