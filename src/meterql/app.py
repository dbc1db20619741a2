"""The application factory: ``create_app(settings)`` → a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from graphql import parse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from meterql.config import Settings
from meterql.context import Services
from meterql.db.engine import Database
from meterql.queries import PAGES, page_query
from meterql.rest_compat.endpoint import make_endpoint, prepare
from meterql.rest_compat.export import make_export_endpoint
from meterql.rest_compat.openapi import openapi_document
from meterql.rest_compat.routes import ROUTES
from meterql.schema import build_schema
from meterql.schema.limits import GraphQLLimits
from meterql.web.answers import Answers
from meterql.web.assets import asset_endpoint
from meterql.web.edge import EdgeMiddleware
from meterql.web.etags import ETags
from meterql.web.graphql_view import GraphQLView
from meterql.web.health import alive, ready_endpoint
from meterql.web.instruments import (
    Instruments,
    metrics_endpoint,
    multiprocess_dir,
    operation_names,
)
from meterql.web.pages import api_docs_page, dashboard_page
from meterql.web.request_ids import HEADER, request_id
from meterql.web.responses import internal_error_response
from meterql.webhooks import Deliverer
from meterql.windows import Clock, system_clock


async def _http_error(request: Request, exc: Exception) -> Response:
    # FastAPI's shape for routing errors ({"detail": "Not Found"}), not Starlette's text.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug escaped an endpoint. Starlette logs it with its traceback (and
    # re-raises it to the server); the client gets a generic answer and the
    # id to report, never the exception's text.
    # This answer is sent from outside every middleware: name the id here.
    rid = request_id(request.scope)
    response = internal_error_response(rid)
    if rid:
        response.headers[HEADER] = rid
    return response


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    clock: Clock = system_clock,
) -> Starlette:
    """Build the app. Raises ``DocumentError`` if a /v1 document does not validate.

    The database schema is not migrated here: ``meterql serve`` does that
    before the server starts, once, rather than once per worker.
    """
    settings = settings or Settings()
    db = database or Database.from_settings(settings)
    schema = build_schema(limits=GraphQLLimits.from_settings(settings))
    services = Services(settings=settings, db=db, schema=schema, clock=clock)

    prepared = prepare(services.schema, ROUTES)
    own_documents = [p.document for p in prepared] + [parse(page_query(n)) for n in PAGES]
    instruments = Instruments(db, multiprocess_dir(), operation_names(own_documents))

    etags = ETags(settings)
    answers = Answers(int(settings.answer_cache_mb * 2**20))
    routes: list[BaseRoute] = [
        Route(
            p.route.path,
            make_export_endpoint(p, services) if p.route.media_type == "text/csv"
            else make_endpoint(p, services, etags, answers),
            methods=[p.route.method],
        )
        for p in prepared
    ]
    openapi = openapi_document(schema._schema, prepared)
    routes.append(Route("/v1/openapi.json", _static_json(openapi), methods=["GET"]))
    # For people, not clients: not operations of the OpenAPI document.
    routes.append(Route("/", dashboard_page, methods=["GET"]))
    routes.append(Route("/v1/docs", api_docs_page, methods=["GET"]))
    routes.append(Route("/static/{path:path}", asset_endpoint, methods=["GET"]))
    graphql = GraphQLView(services, etags, answers)
    routes.append(Route("/graphql", graphql, methods=["GET", "POST"]))
    # Operations: outside /v1 and its OpenAPI document, and without tokens.
    routes.append(Route("/healthz", alive, methods=["GET"]))
    routes.append(Route("/readyz", ready_endpoint(db, settings.readyz_timeout_s), methods=["GET"]))
    if settings.metrics_enabled:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        routes.append(Route("/metrics", metrics_endpoint(instruments, token), methods=["GET"]))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Each gateway runs a deliverer; they take turns (meterql.webhooks).
        delivering = (asyncio.ensure_future(Deliverer(db, settings, clock).run())
                      if settings.webhook_delivery else None)
        # What exists once the app is built (modules, the schema, compiled
        # statements: some 150k objects) lives as long as the process. Frozen,
        # the cyclic collector stops walking it at every full collection: on
        # this project's benchmark machine each one was a 60-95 ms pause of
        # the event loop, every few thousand requests.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if delivering is not None:
                delivering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await delivering
            instruments.close()
            await db.dispose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        # One layer: request id, compression, access line (``web/edge.py``).
        middleware=[Middleware(EdgeMiddleware, instruments=instruments)],
    )
    app.state.services = services
    app.state.instruments = instruments
    return app


def _static_json(document: object) -> Callable[[Request], Awaitable[Response]]:
    body = json.dumps(document, separators=(",", ":")).encode()

    async def endpoint(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    return endpoint


def app_from_environment() -> Starlette:
    """The app with settings from the environment: uvicorn's factory for ``--workers``."""
    return create_app(Settings())
