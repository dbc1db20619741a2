"""Run a route's prepared document in-process and turn the result into HTTP."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import DocumentNode, ExecutionResult, execute, parse, validate
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterql.context import Context, Services, authenticated_context, finish
from meterql.errors import MeterqlError
from meterql.rest_compat.body import ClientGone, decode_json, read_body
from meterql.rest_compat.params import coerce
from meterql.rest_compat.routes import CompatRoute
from meterql.web.answers import Answer, Answers, answer_key, kept_response
from meterql.web.etags import ETags, matches, not_modified
from meterql.web.request_facts import request_facts
from meterql.web.request_ids import request_id
from meterql.web.responses import client_gone_response, error_response, internal_error_response

logger = logging.getLogger("meterql.rest_compat")

Endpoint = Callable[[Request], Awaitable[Response]]


class DocumentError(RuntimeError):
    """A fixed document does not validate against the schema: refuse to start."""


@dataclass(frozen=True)
class PreparedRoute:
    route: CompatRoute
    document: DocumentNode


def load_document(name: str) -> str:
    return (resources.files("meterql.rest_compat") / "documents" / name).read_text("utf-8")


def prepare(schema: strawberry.Schema, routes: Sequence[CompatRoute]) -> list[PreparedRoute]:
    """Parse and validate every document once, at start-up."""
    prepared = []
    for route in routes:
        document = parse(load_document(route.document))
        errors = validate(schema._schema, document)
        if errors:
            raise DocumentError(f"{route.document}: {'; '.join(e.message for e in errors)}")
        prepared.append(PreparedRoute(route, document))
    return prepared


async def run_document(
    schema: strawberry.Schema,
    document: DocumentNode,
    context: Context,
    variables: dict[str, Any],
    operation_name: str | None = None,
) -> ExecutionResult:
    # graphql-core directly: the document is already parsed and validated, so
    # Strawberry's per-request parse/validate/extension work would be waste.
    result = execute(
        schema._schema,
        document,
        context_value=context,
        variable_values=variables,
        operation_name=operation_name,
        executor_class=schema.execution_context_class,
    )
    if isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    return result


def result_response(result: ExecutionResult, request_id: str) -> Response:
    if result.errors:
        error = result.errors[0]
        original = error.original_error
        if isinstance(original, MeterqlError):
            return error_response(original)
        logger.error("compat document failed (request id %s): %s", request_id or "-",
                     error.message, exc_info=original)
        return internal_error_response(request_id)
    assert result.data is not None
    return JSONResponse(result.data["body"])


async def request_context(services: Services, request: Request) -> Context:
    """The route's context, from the request's token, before anything else is read.

    FastAPI resolved the security dependency before validating parameters:
    a bad token wins over a bad ``days``, on every route.
    """
    return await authenticated_context(
        services, request.headers.get("authorization"), request_id(request.scope),
        request_facts(request.scope),
    )


def make_endpoint(
    prepared: PreparedRoute, services: Services, etags: ETags, answers: Answers
) -> Endpoint:
    route = prepared.route

    async def endpoint(request: Request) -> Response:
        try:
            context = await request_context(services, request)
        except MeterqlError as error:
            return error_response(error)
        etag = key = None
        try:
            context.require(route.scope)
            variables = coerce(request.query_params, route.params)
            if route.body is None:
                # Nothing the answer shows has changed since the client's copy.
                etag = etags.of(context, request)
                if matches(request, etag):
                    return not_modified(etag)
                if answers.enabled:
                    # Nor since this worker last made it (``web/answers.py``).
                    key = answer_key(etag, context.grant.scopes)
                    kept = answers.get(key)
                    context.facts.answer_kept = kept is not None
                    if kept is not None:
                        return kept_response(kept, etag)
            else:
                try:
                    raw = await read_body(request, route.body.max_bytes,
                                          services.settings.body_timeout_s)
                    variables[route.body.variable] = route.body.coerce(
                        decode_json(raw), context.now, context.event_horizon)
                except MeterqlError as error:
                    # Refused before the resolver, which counts every later
                    # outcome: the one place a REST batch's refusal is seen.
                    context.facts.batch_refused(error.code)
                    raise
            result = await run_document(services.schema, prepared.document, context, variables)
        except MeterqlError as error:
            return error_response(error)
        except ClientGone:
            return client_gone_response()
        finally:
            finish(context)
        response = result_response(result, context.request_id)
        if etag is not None and response.status_code == 200:
            response.headers["ETag"] = etag
            if key is not None:
                answers.put(key, Answer(bytes(response.body), response.headers["content-type"]))
        return response

    endpoint.__name__ = route.document.removesuffix(".graphql")
    return endpoint
