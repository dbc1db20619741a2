"""``/graphql``: Strawberry's ASGI view behind bearer-token authentication.

The explorer page itself (``meterql.web.pages``: GraphiQL from files this package
serves, no CDN) loads without a token; every operation, over GET or POST,
needs one.

What the view refuses before any GraphQL work (each a JSON ``{"detail"}``):
a body over ``graphql_max_body_bytes`` (413, counted as it arrives, whatever
``Content-Length`` claims) or not arrived within ``body_timeout_s`` (408);
form-encoded, multipart and other non-JSON POSTs
(400: a browser can send those cross-site without a preflight, so refusing
them closes the CSRF door even for cookie-less clients); a JSON list of
operations unless batching is configured (400); a mutation over GET (405).

A GET query's answer carries an ETag (``web/etags.py``); the same GET with
``If-None-Match`` naming it is answered 304 after the token's round trip,
without running the query, while nothing it could show has changed. And a
query's whole answer, GET or POST, is kept under the same parts
(``web/answers.py``): asked again unchanged, it is sent from memory.
"""

from __future__ import annotations

import json
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.types import QueryParams
from strawberry.types.execution import ExecutionResult

from meterql.context import Context, Services, authenticated_context, finish
from meterql.errors import MeterqlError
from meterql.rest_compat.body import ClientGone, read_body
from meterql.web.answers import Answer, Answers, answer_key, kept_response
from meterql.web.etags import ETags, matches, not_modified
from meterql.web.pages import explorer_page
from meterql.web.request_facts import request_facts
from meterql.web.request_ids import request_id
from meterql.web.responses import client_gone_response, error_response

_CONTEXT_KEY = "meterql_context"
# The tag a GET's answer gets, and whether its execution went without errors.
_ETAG_KEY = "meterql_etag"
_ANSWERED_KEY = "meterql_answered"
# Where the answer made now is kept, when it may be (``web/answers.py``).
_ANSWER_KEY = "meterql_answer_key"
# Strawberry's words when a GET asks for a mutation (a 400 there).
_GET_MUTATION = "mutations are not allowed when using GET"


def _decode(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HTTPException(400, "Unable to parse request body as JSON") from None


class GraphQLView(GraphQL[Context | None, None]):
    def __init__(self, services: Services, etags: ETags, answers: Answers) -> None:
        settings = services.settings
        super().__init__(
            services.schema,
            # Without introspection the explorer could show nothing anyway.
            # Strawberry's own page loads GraphiQL from a CDN: only the switch
            # is used, ``render_graphql_ide`` serves ours.
            graphql_ide="graphiql" if settings.introspection else None,
            allow_queries_via_get=True,
            multipart_uploads_enabled=False,
        )
        self.services = services
        self.etags = etags
        self.answers = answers
        self.max_body_bytes = settings.graphql_max_body_bytes
        self.body_timeout_s = settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No subscriptions in this schema: refuse the handshake.
            await WebSocket(scope, receive, send).close()
            return
        request = Request(scope, receive)
        if self.should_render_graphql_ide(self.request_adapter_class(request)):
            await self._respond(scope, receive, send)
            return
        try:
            context = await authenticated_context(
                self.services, request.headers.get("authorization"), request_id(scope),
                request_facts(scope),
            )
        except MeterqlError as error:
            await error_response(error)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[_CONTEXT_KEY] = context
        etag = None
        if request.method == "GET":
            etag = state[_ETAG_KEY] = self.etags.of(context, request)
            if matches(request, etag):
                finish(context)
                await not_modified(etag)(scope, receive, send)
                return
        try:
            try:
                body = await self._body(request)
            except MeterqlError as error:
                await error_response(error)(scope, receive, send)
                return
            except ClientGone:
                await client_gone_response()(scope, receive, send)
                return
            if self.answers.enabled:
                kept = self._kept(context, request, etag, body)
                if kept is not None:
                    await kept_response(kept, etag)(scope, receive, send)
                    return
            await self._respond(scope, _replay(body), send)
        finally:
            finish(context)

    def _kept(
        self, context: Context, request: Request, etag: str | None, body: bytes
    ) -> Answer | None:
        """The kept answer to this request, if any; else where to keep the one made now.

        A POST has no ETag of its own, but the same parts make its key (the
        method is among them), with the body and the headers the view reads.
        """
        headers = request.headers
        key = answer_key(
            etag or self.etags.of(context, request), context.grant.scopes,
            headers.get("content-type", "").encode("latin-1"),
            headers.get("accept", "").encode("latin-1"), body,
        )
        kept = self.answers.get(key)
        context.facts.answer_kept = kept is not None
        if kept is None:
            request.scope["state"][_ANSWER_KEY] = key
        else:
            context.facts.operation(kept.operation, "query", False)
        return kept

    async def _body(self, request: Request) -> bytes:
        """The body, read within its bounds and replayed to Strawberry (which reads any size)."""
        if request.method == "GET":
            return b""
        return await read_body(request, self.max_body_bytes, self.body_timeout_s)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.run(Request(scope, receive))
        except HTTPException as error:
            # Strawberry answers these in plain text; every other error of
            # ours is FastAPI's JSON shape.
            status, headers = error.status_code, None
            if error.reason == _GET_MUTATION:
                # GraphQL over HTTP: the method is what is wrong, so 405.
                status, headers = 405, {"Allow": "POST"}
            response = JSONResponse({"detail": error.reason}, status_code=status, headers=headers)
        state = scope.get("state", {})
        etag = state.get(_ETAG_KEY)
        if response.status_code == 200 and state.get(_ANSWERED_KEY):
            if etag is not None:
                response.headers["ETag"] = etag
            key = state.get(_ANSWER_KEY)
            facts = state[_CONTEXT_KEY].facts if key is not None else None
            # One query, whole: a mutation or a batch of operations is never kept.
            if facts is not None and facts.operations == 1 and facts.operation_type == "query":
                self.answers.put(key, Answer(bytes(response.body),
                                             response.headers["content-type"],
                                             facts.operation_name))
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        return explorer_page()

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

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        # Only an answer without errors gets a tag: an error may be passing.
        request.scope.setdefault("state", {})[_ANSWERED_KEY] = not result.errors
        return await super().process_result(request, result)

    async def get_context(self, request: object, response: object) -> Context | None:
        # None only while rendering the GraphiQL page, which runs no resolver.
        state = getattr(request, "scope", {}).get("state", {})
        context: Context | None = state.get(_CONTEXT_KEY)
        return context


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            # After the body, an ASGI app that waits again waits for the
            # client to go away.
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
