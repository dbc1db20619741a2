"""``/graphql``: Strawberry's ASGI view behind bearer-token authentication.

The GraphiQL page itself loads without a token (people paste theirs into its
headers pane); every operation, over GET or POST, needs one.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from meterql.context import Context, Services, authenticated_context, finish
from meterql.errors import MeterqlError
from meterql.responses import error_response

_CONTEXT_KEY = "meterql_context"


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
                await super().__call__(scope, receive, send)
            finally:
                await finish(context)
            return
        await super().__call__(scope, receive, send)

    async def get_context(self, request: object, response: object) -> Context | None:
        # None only while rendering the GraphiQL page, which runs no resolver.
        state = getattr(request, "scope", {}).get("state", {})
        context: Context | None = state.get(_CONTEXT_KEY)
        return context
