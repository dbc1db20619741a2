"""``/graphql``: Strawberry's ASGI view behind bearer-token authentication.

The GraphiQL page itself loads without a token (people paste theirs into its
headers pane); every operation, over GET or POST, needs one.
"""

from __future__ import annotations

import json
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http.types import QueryParams

from meterql.context import Context, Services, authenticated_context, finish
from meterql.errors import MeterqlError
from meterql.responses import error_response

_CONTEXT_KEY = "meterql_context"


def _decode(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HTTPException(400, "Unable to parse request body as JSON") from None


class GraphQLView(GraphQL[Context | None, None]):
    def __init__(self, services: Services) -> None:
        super().__init__(services.schema, graphql_ide="graphiql", allow_queries_via_get=True)
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No subscriptions in this schema: refuse the handshake.
            await WebSocket(scope, receive, send).close()
            return
        request = Request(scope, receive)
        if not self.should_render_graphql_ide(self.request_adapter_class(request)):
            try:
                context = await authenticated_context(
                    self.services, request.headers.get("authorization")
                )
            except MeterqlError as error:
                await error_response(error)(scope, receive, send)
                return
            scope.setdefault("state", {})[_CONTEXT_KEY] = context
            try:
                await self._serve(request, scope, receive, send)
            finally:
                await finish(context)
            return
        await self._serve(request, scope, receive, send)

    async def _serve(self, request: Request, scope: Scope, receive: Receive, send: Send) -> None:
        # Strawberry's own __call__, but its refusals (a body that is no JSON
        # object, a mutation over GET...) answer JSON like every other error
        # of the app, not plain text.
        try:
            response = await self.run(request)
        except HTTPException as error:
            response = JSONResponse({"detail": error.reason}, status_code=error.status_code)
        await response(scope, receive, send)

    def parse_json(self, data: str | bytes) -> Any:
        # The body of a POST. Strawberry turns only JSONDecodeError into a
        # 400: invalid UTF-8, nesting deeper than the decoder's stack, and a
        # document that is no object (``null``, ``"x"``) escaped as 500s.
        document = _decode(data)
        if not isinstance(document, dict | list):
            raise HTTPException(400, "The GraphQL request must be a JSON object")
        return document

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        # A GET's ``variables`` and ``extensions`` may be JSON ``null``: only
        # decoded here; Strawberry checks their types afterwards.
        parsed: dict[str, Any] = dict(params)
        for key in ("variables", "extensions"):
            if parsed.get(key):
                parsed[key] = _decode(parsed[key])
        return parsed

    async def get_context(self, request: object, response: object) -> Context | None:
        # None only while rendering the GraphiQL page, which runs no resolver.
        state = getattr(request, "scope", {}).get("state", {})
        context: Context | None = state.get(_CONTEXT_KEY)
        return context
