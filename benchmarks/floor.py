"""The HTTP floor: a bare Starlette app answering captured responses from memory.

Served by ``uvicorn.run`` exactly as ``meterql serve`` serves meterql (same
server, same log level, one process), so the difference between the two is
what meterql itself costs per request: auth, GraphQL, SQL, serialisation.

    python benchmarks/floor.py BODIES.json PORT

BODIES.json maps ``/path?query`` to a GET's captured answer, and
``graphql:OperationName`` to the answer of a POST /graphql naming that
operation (the GraphQL-only queries, which have no route).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build(captured: dict[str, dict[str, Any]]) -> Starlette:
    """One catch-all route: the key is the path plus its query string.

    A POST to /graphql is keyed by the ``operationName`` of its JSON body
    instead: the floor reads and parses the request, as any GraphQL server
    must, and does nothing else. Each answer repeats what meterql sent: its
    status, its bytes, and its content type verbatim (Starlette then adds the
    same content-length).
    """
    answers = {
        key: (answer["body"].encode(), answer["status"], answer["content_type"])
        for key, answer in captured.items()
    }

    async def answer(request: Request) -> Response:
        if request.method == "POST" and request.url.path == "/graphql":
            key = f"graphql:{json.loads(await request.body()).get('operationName')}"
        else:
            key = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        found = answers.get(key)
        if found is None:
            return Response(status_code=404)
        body, status, content_type = found
        response = Response(body, status_code=status)
        if content_type is not None:
            response.headers["content-type"] = content_type
        return response

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


if __name__ == "__main__":
    captured = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    uvicorn.run(build(captured), host="127.0.0.1", port=int(sys.argv[2]), log_level="info")
