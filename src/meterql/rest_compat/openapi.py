"""``GET /v1/openapi.json``: an OpenAPI 3.1 document made from the route table.

Nothing here is written twice. Parameters take their ranges and defaults
from the pydantic adapters that validate them, the ingest body its schema
from the records it is validated into, and every 200 response its schema
from the route's fixed GraphQL document, walked against the GraphQL schema:
the document's aliases are the REST keys, and the GraphQL types say which
values are strings, integers, lists or null. A route added to the table is
documented; a field added to a document shows in its response schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from graphql import (
    FieldNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    print_ast,
)
from pydantic import TypeAdapter

from meterql.errors import (
    DatabaseUnavailable,
    InvalidCredentials,
    MeterqlError,
    PermissionDenied,
    http_status,
)
from meterql.ingest import MAX_EVENTS
from meterql.records import UsageEventRecord
from meterql.rest_compat.endpoint import PreparedRoute
from meterql.rest_compat.export import CSV_DESCRIPTION, CSV_RUNS

_REF = "#/components/schemas/{model}"
_MONEY = {"type": "string", "pattern": r"^-?\d+\.\d{4}$", "examples": ["12.3400"],
          "description": "Exact decimal USD with 4 places, rounded half-up."}
# How each GraphQL scalar of the schema is written in a REST body.
_SCALARS: dict[str, dict[str, Any]] = {
    "String": {"type": "string"},
    "ID": {"type": "string"},
    "Boolean": {"type": "boolean"},
    "Int": {"type": "integer"},
    "BigInt": {"type": "integer"},
    "Float": {"type": "number"},
    "Decimal": _MONEY,
    "Date": {"type": "string", "format": "date"},
    "DateTime": {"type": "string", "format": "date-time",
                 "description": "UTC, with a Z suffix.", "examples": ["2026-11-01T00:00:00Z"]},
}
# Every route may answer these, whatever its parameters.
_COMMON_ERRORS: tuple[type[MeterqlError], ...] = (
    InvalidCredentials, PermissionDenied, DatabaseUnavailable,
)


class UnsupportedDocument(ValueError):
    """A fixed document uses something this generator cannot describe."""


def openapi_document(schema: GraphQLSchema, routes: Sequence[PreparedRoute]) -> dict[str, Any]:
    components: dict[str, Any] = {
        "Detail": {
            "type": "object", "required": ["detail"], "additionalProperties": False,
            "properties": {"detail": {"type": "string"}},
        },
        "ValidationError": {
            "type": "object", "required": ["type", "loc", "msg", "input"],
            "properties": {
                "type": {"type": "string"},
                "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                "msg": {"type": "string"},
                "input": {},
                "ctx": {"type": "object"},
            },
        },
        "HTTPValidationError": {
            "type": "object", "required": ["detail"],
            "properties": {"detail": {"type": "array",
                                      "items": {"$ref": _REF.format(model="ValidationError")}}},
        },
    }
    paths: dict[str, Any] = {}
    for prepared in routes:
        route = prepared.route
        operation = _operation(schema, prepared, components)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meterql /v1",
            "version": _version(),
            "description": (
                "The legacy REST routes of the usage-and-billing API. Each route runs one "
                "fixed GraphQL document against `/graphql`'s schema; the document is shown "
                "with each operation."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(
    schema: GraphQLSchema, prepared: PreparedRoute, components: dict[str, Any]
) -> dict[str, Any]:
    route = prepared.route
    defaults: dict[str, Any] = {}
    if route.media_type == "application/json":
        definition = _operation_definition(prepared)
        root = (schema.mutation_type if definition.operation.value == "mutation"
                else schema.query_type)
        assert root is not None
        body = _selection_schema(root, definition.selection_set)["properties"]["body"]
        ok: dict[str, Any] = {"description": "OK",
                              "content": {"application/json": {"schema": body}}}
        for param in route.params:
            default = _argument_default(root, definition, param.variable)
            if default is not None:
                defaults[param.name] = default
        runs = "Runs this fixed GraphQL document"
    elif route.media_type == "text/csv":
        # Streamed rows, not a document's answer: the columns are the
        # export's (its parameters' schemas carry their own defaults).
        ok = {
            "description": CSV_DESCRIPTION,
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "headers": {"Content-Disposition": {
                "description": 'attachment; filename="usage-<from>-<to>.csv"',
                "schema": {"type": "string"}}},
        }
        runs = CSV_RUNS
    else:
        raise UnsupportedDocument(f"{route.path}: no description for {route.media_type}")
    responses: dict[str, Any] = {
        "200": ok,
        "401": _error_response("Missing, malformed, unknown or revoked bearer token",
                               headers={"WWW-Authenticate": {"schema": {"type": "string"}}}),
    }
    for error in (*_COMMON_ERRORS, *route.answers):
        status = str(http_status(error))
        if status != "401":
            responses.setdefault(status, _error_response(error.default_message))
    if route.media_type == "application/json" and route.body is None:
        # Conditional GETs (``web/etags.py``).
        ok["headers"] = {"ETag": {
            "description": "Names this answer: send it back as If-None-Match",
            "schema": {"type": "string"}}}
        responses["304"] = {
            "description": "Not Modified: the answer the request's If-None-Match names is "
                           "still the current one (nothing it shows has changed)"}
    if route.params or route.body is not None:
        responses["422"] = {
            "description": "Validation error",
            "content": {"application/json": {
                "schema": {"$ref": _REF.format(model="HTTPValidationError")}}},
        }
    operation: dict[str, Any] = {
        "operationId": route.document.removesuffix(".graphql"),
        "summary": f"{route.method} {route.path}",
        # Grouped by the path's first word under /v1 (metrics, billing, export,
        # usage), so the docs page lists them in sections, not "default".
        "tags": [route.path.split("/")[2]],
        "description": f"{runs}:\n\n```graphql\n{print_ast(prepared.document)}\n```",
        "x-graphql-document": print_ast(prepared.document),
        "x-required-scope": route.scope,
        "parameters": [
            {
                "name": param.name,
                "in": "query",
                "required": False,
                "schema": {k: v for k, v in param.adapter.json_schema().items() if k != "title"},
            }
            for param in route.params
        ],
        "responses": dict(sorted(responses.items())),
    }
    for spec in operation["parameters"]:
        if spec["name"] in defaults:
            spec["schema"]["default"] = defaults[spec["name"]]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _events_schema(components)}},
        }
    return operation


def _operation_definition(prepared: PreparedRoute) -> OperationDefinitionNode:
    (definition,) = prepared.document.definitions
    if not isinstance(definition, OperationDefinitionNode):
        raise UnsupportedDocument(f"{prepared.route.document}: one operation, no fragments")
    return definition


def _selection_schema(parent: GraphQLObjectType, selection: SelectionSetNode) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for node in selection.selections:
        if not isinstance(node, FieldNode):
            raise UnsupportedDocument("fixed documents select plain fields only")
        key = node.alias.value if node.alias else node.name.value
        field = parent.fields[node.name.value]
        properties[key] = _output_schema(field.type, node.selection_set)
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


def _output_schema(
    graphql_type: GraphQLOutputType, selection: SelectionSetNode | None
) -> dict[str, Any]:
    if isinstance(graphql_type, GraphQLNonNull):
        return _non_null_schema(graphql_type.of_type, selection)
    inner = _non_null_schema(graphql_type, selection)
    # A nullable GraphQL type may be written as null.
    if "$ref" in inner or "type" not in inner:
        return {"anyOf": [inner, {"type": "null"}]}
    return {**inner, "type": [inner["type"], "null"]}


def _non_null_schema(
    graphql_type: GraphQLOutputType, selection: SelectionSetNode | None
) -> dict[str, Any]:
    if isinstance(graphql_type, GraphQLNonNull):
        return _non_null_schema(graphql_type.of_type, selection)
    if isinstance(graphql_type, GraphQLList):
        item = graphql_type.of_type
        schema = (_non_null_schema(item.of_type, selection) if isinstance(item, GraphQLNonNull)
                  else _output_schema(item, selection))
        return {"type": "array", "items": schema}
    if isinstance(graphql_type, GraphQLObjectType):
        if selection is None:
            raise UnsupportedDocument(f"{graphql_type.name} selected without fields")
        return _selection_schema(graphql_type, selection)
    if isinstance(graphql_type, GraphQLScalarType) and graphql_type.name in _SCALARS:
        return dict(_SCALARS[graphql_type.name])
    raise UnsupportedDocument(f"no JSON schema for GraphQL type {graphql_type}")


def _argument_default(
    root: GraphQLObjectType, definition: OperationDefinitionNode, variable: str
) -> Any:
    """The schema's default for the argument a variable feeds (absent means default)."""
    (field_node,) = (n for n in definition.selection_set.selections if isinstance(n, FieldNode))
    for argument in field_node.arguments or ():
        value = argument.value
        if getattr(getattr(value, "name", None), "value", None) == variable:
            default = root.fields[field_node.name.value].args[argument.name.value].default_value
            return None if default is None or not isinstance(default, int | str) else default
    return None


def _events_schema(components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(list[UsageEventRecord]).json_schema(ref_template=_REF)
    components.update(schema.pop("$defs", {}))
    return {**schema, "maxItems": MAX_EVENTS}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Detail")}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _version() -> str:
    try:
        return version("meterql")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
