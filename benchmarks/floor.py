"""The HTTP floor: a bare Starlette app answering captured bodies from memory.

Served by ``uvicorn.run`` exactly as ``meterql serve`` serves meterql (same
server, same log level, one process), so the difference between the two is
what meterql itself costs per request: auth, GraphQL, SQL, serialisation.

    python benchmarks/floor.py BODIES.json PORT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build(bodies: dict[str, str]) -> Starlette:
    """One catch-all route: the key is the path plus its query string."""
    encoded = {key: body.encode() for key, body in bodies.items()}

    async def answer(request: Request) -> Response:
        key = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        body = encoded.get(key)
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


if __name__ == "__main__":
    captured = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    uvicorn.run(build(captured), host="127.0.0.1", port=int(sys.argv[2]), log_level="info")
