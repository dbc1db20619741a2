"""The three HTML pages: the usage dashboard, the GraphQL explorer and the /v1 reference.

``GET /`` shows the dashboard, ``GET /graphql`` from a browser (``Accept:
text/html``) the explorer, ``GET /v1/docs`` Swagger UI over
``/v1/openapi.json``. Each is a template under ``templates/`` whose
``{{static:PATH}}`` marks become the versioned URLs of files this package
serves (``meterql.web.assets``), and whose ``{{query:NAME}}`` marks become
the page queries as shipped (``meterql.queries``): the dashboard sends those
very documents.

URLs in the pages are relative (``static/…`` from ``/`` and ``/graphql``,
``../static/…`` and ``openapi.json`` from ``/v1/docs``), so a proxy that
serves the app under a path prefix keeps working without a setting.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from meterql.queries import page_query
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
_QUERY = re.compile(r"\{\{query:([^}]+)\}\}")


@cache
def _render(template: str, root: str) -> bytes:
    text = (resources.files("meterql") / "templates" / template).read_text("utf-8")
    text = _STATIC.sub(lambda mark: root + asset_url(mark.group(1)), text)
    # Inside <script type="application/graphql"> the text is data, never run
    # and never parsed as markup, up to a "</script" (no GraphQL document of
    # ours holds one: checked here rather than trusted).
    return _QUERY.sub(lambda mark: _data_block(page_query(mark.group(1))), text).encode()


def _data_block(text: str) -> str:
    if "</script" in text.lower():
        raise ValueError("a page query may not contain '</script'")
    return text


async def dashboard_page(_request: Request) -> Response:
    return HTMLResponse(_render("dashboard.html", ""), headers=_HEADERS)


def explorer_page() -> Response:
    return HTMLResponse(_render("explorer.html", ""), headers=_HEADERS)


async def api_docs_page(_request: Request) -> Response:
    return HTMLResponse(_render("api_docs.html", "../"), headers=_HEADERS)
