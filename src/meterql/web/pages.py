"""The two HTML pages: the GraphiQL explorer and the /v1 reference.

``GET /graphql`` from a browser (``Accept: text/html``) shows the explorer,
``GET /v1/docs`` shows Swagger UI over ``/v1/openapi.json``. Both are
templates under ``templates/`` whose ``{{static:PATH}}`` marks become the
versioned URLs of files this package serves (``meterql.web.assets``).

URLs in the pages are relative (``static/…`` from ``/graphql``, ``../static/…``
and ``openapi.json`` from ``/v1/docs``), so a proxy that serves the app under
a path prefix keeps working without a setting.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from meterql.web.assets import asset_url

# No inline script or style in either page (their code is in files of its
# own), so the policy needs neither 'unsafe-inline' nor 'unsafe-eval'. The
# vendored stylesheets embed their fonts and a few icons as data: URLs.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # The page names the current assets' versions: always ask again.
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_STATIC = re.compile(r"\{\{static:([^}]+)\}\}")


@cache
def _render(template: str, root: str) -> bytes:
    text = (resources.files("meterql") / "templates" / template).read_text("utf-8")
    return _STATIC.sub(lambda mark: root + asset_url(mark.group(1)), text).encode()


def explorer_page() -> Response:
    return HTMLResponse(_render("explorer.html", ""), headers=_HEADERS)


async def api_docs_page(_request: Request) -> Response:
    return HTMLResponse(_render("api_docs.html", "../"), headers=_HEADERS)
