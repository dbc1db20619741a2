"""Request bodies: bounded reading and JSON decoding with FastAPI's 422 shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from meterql.errors import InvalidInput, PayloadTooLarge


@dataclass(frozen=True)
class JsonBody:
    """A JSON body that becomes one GraphQL variable.

    ``coerce`` validates the decoded document (raising ``InvalidInput`` with
    ``loc`` rooted at ``"body"``) and returns the variable's value.
    """

    variable: str
    max_bytes: int
    coerce: Callable[[Any, datetime], Any]


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refusing more than ``max_bytes`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


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
