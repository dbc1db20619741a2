"""The application factory: ``create_app(settings)`` → a Starlette app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from meterql.config import Settings
from meterql.context import Services
from meterql.db.engine import Database
from meterql.graphql_view import GraphQLView
from meterql.rest_compat.endpoint import make_endpoint, prepare
from meterql.rest_compat.routes import ROUTES
from meterql.schema import build_schema
from meterql.windows import Clock, system_clock


async def _http_error(request: Request, exc: Exception) -> Response:
    # FastAPI's shape for routing errors ({"detail": "Not Found"}), not Starlette's text.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


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
    services = Services(settings=settings, db=db, schema=build_schema(), clock=clock)

    routes: list[BaseRoute] = [
        Route(p.route.path, make_endpoint(p, services), methods=[p.route.method])
        for p in prepare(services.schema, ROUTES)
    ]
    graphql = GraphQLView(services)
    routes.append(Route("/graphql", graphql, methods=["GET", "POST"]))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await db.dispose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.services = services
    return app


def app_from_environment() -> Starlette:
    """The app with settings from the environment: uvicorn's factory for ``--workers``."""
    return create_app(Settings())
