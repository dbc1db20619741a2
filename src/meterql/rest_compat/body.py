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


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise InvalidInput(
            "Field required",
            [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}],
        )
    try:
        # Decimals, not floats: a cost must not lose digits on the way in.
        return json.loads(raw, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        position = error.pos if isinstance(error, json.JSONDecodeError) else error.start
        reason = error.msg if isinstance(error, json.JSONDecodeError) else error.reason
        raise InvalidInput(
            "JSON decode error",
            [{"type": "json_invalid", "loc": ["body", position], "msg": "JSON decode error",
              "input": {}, "ctx": {"error": reason}}],
        ) from None
