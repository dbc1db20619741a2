"""``GET /static/{path}``: the browser pages' files, served from the package.

Two kinds live under ``static/``: vendored, pinned builds of GraphiQL, React
and Swagger UI (``static/VERSIONS`` names each file's npm package, version
and sha256; ``scripts/vendor_assets.sh`` refreshes them), and our own few
lines of page code (``static/meterql/``). Nothing comes from a CDN, so the
pages work on a machine that reaches only this server.

The files are read once per process. A page names each one with its digest
in the query string (``?v=…``), so a browser may keep a file for a year: a
changed file is a new URL. Only scripts, stylesheets and text (the licences)
are served; anything else under ``static/`` is not a URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

# Starlette adds "; charset=utf-8" to text/* types.
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # the start of the body's sha256


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
    etag = f'"{asset.version}"'
    headers = {"Cache-Control": _CACHE_CONTROL, "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
