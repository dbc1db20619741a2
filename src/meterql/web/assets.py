"""``GET /static/{path}``: the browser pages' files, served from the package.

Two kinds live under ``static/``: vendored, pinned builds of GraphiQL, React,
Swagger UI and uPlot (``static/VERSIONS`` names each file's npm package, version
and sha256; ``scripts/vendor_assets.sh`` refreshes them), and our own few
lines of page code (``static/meterql/``). Nothing comes from a CDN, so the
pages work on a machine that reaches only this server.

The files are read once per process. A page names each one with its digest
in the query string (``?v=…``), so a browser may keep a file for a year: a
changed file is a new URL. Only scripts, stylesheets and text (the licences)
are served; anything else under ``static/`` is not a URL.

A client that accepts brotli or gzip gets the file compressed at the
encoding's best setting, done once per process and file, in a thread, the
first time it is asked for (``web/compression.py``), with an ETag of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from meterql.web.compression import accepted, compress_best

# Starlette adds "; charset=utf-8" to text/* types.
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # the start of the body's sha256
    # Each encoding's body, made on first use (a task, so that clients who ask
    # at once wait for one compression).
    encoded: dict[str, asyncio.Task[bytes]] = field(default_factory=dict, compare=False)

    async def body_in(self, encoding: str) -> bytes:
        task = self.encoded.get(encoding)
        if task is None or (task.done() and task.exception() is not None):
            task = self.encoded[encoding] = asyncio.ensure_future(
                asyncio.to_thread(compress_best, self.body, encoding))
        return await asyncio.shield(task)


@cache
def assets() -> dict[str, Asset]:
    """Every servable file under ``static/``, by its path there (``graphiql/…``)."""
    found: dict[str, Asset] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif media_type := MEDIA_TYPES.get(PurePosixPath(child.name).suffix):
                body = child.read_bytes()
                version = hashlib.sha256(body).hexdigest()[:16]
                found[prefix + child.name] = Asset(body, media_type, version)

    walk(resources.files("meterql") / "static", "")
    return found


def asset_url(path: str) -> str:
    """``static/PATH?v=…``, relative to the site's root. KeyError if no such file."""
    return f"static/{path}?v={assets()[path].version}"


async def asset_endpoint(request: Request) -> Response:
    asset = assets().get(request.path_params["path"])
    if asset is None:
        raise HTTPException(404)
    encoding = accepted(request.headers.get("accept-encoding"))
    # Each encoding is its own representation, with its own tag.
    etag = f'"{asset.version}"' if encoding is None else f'"{asset.version}-{encoding}"'
    headers = {"Cache-Control": _CACHE_CONTROL, "ETag": etag, "X-Content-Type-Options": "nosniff",
               "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if encoding is None:
        return Response(asset.body, media_type=asset.media_type, headers=headers)
    headers["Content-Encoding"] = encoding
    return Response(await asset.body_in(encoding), media_type=asset.media_type, headers=headers)
