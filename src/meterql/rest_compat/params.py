"""Query-string coercion that answers exactly what FastAPI + pydantic v2 answered.

Each parameter is validated by a pydantic ``TypeAdapter`` built from the same
bounds the GraphQL arguments use, so the 422 body (``type``, ``loc``, ``msg``,
``input``, ``ctx``) is pydantic's own, not an imitation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import QueryParams

from meterql.errors import InvalidInput
from meterql.records import error_entries
from meterql.windows import DaysArgument

_STR: TypeAdapter[str] = TypeAdapter(str)


@dataclass(frozen=True)
class QueryParam:
    """A query-string parameter and the GraphQL variable it becomes.

    An absent parameter is simply not sent: the schema's argument default
    applies, so defaults live in one place.
    """

    name: str
    variable: str
    adapter: TypeAdapter[Any]


def days(argument: DaysArgument) -> QueryParam:
    return QueryParam("days", "days", argument.adapter)


def optional_str(name: str, variable: str) -> QueryParam:
    return QueryParam(name, variable, _STR)


def coerce(query: QueryParams, params: Sequence[QueryParam]) -> dict[str, Any]:
    """Variables for the document; all bad parameters reported at once, in order.

    Unknown parameters are ignored and a repeated one takes its last value,
    both as FastAPI did.
    """
    variables: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for param in params:
        raw = query.get(param.name)
        if raw is None:
            continue
        try:
            variables[param.variable] = param.adapter.validate_python(raw)
        except ValidationError as error:
            errors.extend(error_entries(error, ("query", param.name)))
    if errors:
        raise InvalidInput("Invalid query parameters", errors)
    return variables
