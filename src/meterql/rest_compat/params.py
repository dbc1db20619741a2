"""Query-string coercion that answers exactly what FastAPI + pydantic v2 answered.

Each parameter is validated by a pydantic ``TypeAdapter`` built from the same
bounds the GraphQL arguments use, so the 422 body (``type``, ``loc``, ``msg``,
``input``, ``ctx``) is pydantic's own, not an imitation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, TypeAdapter, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.datastructures import QueryParams

from meterql import buckets
from meterql.errors import InvalidInput
from meterql.records import error_entries
from meterql.windows import DaysArgument

_STR: TypeAdapter[str] = TypeAdapter(str)
_DATE: TypeAdapter[date] = TypeAdapter(date)


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


def local_date(name: str) -> QueryParam:
    """An ISO date (``2026-03-29``), as FastAPI's ``date`` parameters parsed it."""
    return QueryParam(name, name, _DATE)


def _zone_name(name: str) -> str:
    try:
        buckets.zone(name)
    except InvalidInput as error:
        raise PydanticCustomError("time_zone", error.errors[0]["msg"]) from None
    return name


def time_zone(name: str, variable: str) -> QueryParam:
    """An IANA zone name, checked as GraphQL's ``tz`` is; the schema lists every one."""
    schema = {"type": "string", "enum": sorted(buckets.known_zones()),
              "default": buckets.DEFAULT_ZONE, "examples": ["Europe/Berlin"]}
    adapter: TypeAdapter[str] = TypeAdapter(
        Annotated[str, AfterValidator(_zone_name), WithJsonSchema(schema)]
    )
    return QueryParam(name, variable, adapter)


def _expected(values: Sequence[str]) -> str:
    # pydantic's wording for an enum: 'a', 'b' or 'c'.
    quoted = [f"'{value}'" for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def choice(
    name: str, variable: str, choices: Mapping[str, str], default: str | None = None
) -> QueryParam:
    """One of fixed values, case-sensitive, refused with pydantic's ``enum`` error as
    FastAPI's ``Enum`` parameters were; ``choices`` maps each value to what GraphQL is sent."""
    expected = _expected(list(choices))

    def pick(value: str) -> str:
        if value not in choices:
            raise PydanticCustomError("enum", "Input should be {expected}", {"expected": expected})
        return choices[value]

    schema: dict[str, Any] = {"type": "string", "enum": list(choices)}
    if default is not None:
        schema["default"] = default
    adapter: TypeAdapter[str] = TypeAdapter(
        Annotated[str, AfterValidator(pick), WithJsonSchema(schema)]
    )
    return QueryParam(name, variable, adapter)


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
