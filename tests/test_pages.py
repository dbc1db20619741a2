"""The dashboard, explorer and docs pages over plain HTTP: headers, their files, no CDN.

What a browser does with them is tests/test_browser.py; here every URL a
page names must be ours and answer, and the vendored files must be the ones
static/VERSIONS pins, each with its licence.
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from importlib import resources
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.queries import PAGES as PAGE_QUERIES
from meterql.queries import page_query
from meterql.web.pages import CONTENT_SECURITY_POLICY
from tests.conftest import NOW

HTML = {"accept": "text/html"}
PAGES = [("/", "uPlot.iife.min.js"), ("/graphql", "graphiql.min.js"),
         ("/v1/docs", "swagger-ui-bundle.js")]
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
STATIC = resources.files("meterql") / "static"


class Links(HTMLParser):
    """The URLs of a page's scripts and stylesheets, and its data blocks by id."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.data: dict[str, str] = {}
        self._block: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(found["src"] or "")
        if tag == "script" and found.get("type") == "application/graphql":
            self._block = found.get("id") or ""
            self.data[self._block] = ""
        if tag == "link" and found.get("rel") == "stylesheet":
            self.urls.append(found.get("href") or "")

    def handle_data(self, data: str) -> None:
        if self._block is not None:
            self.data[self._block] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._block = None


async def page(client: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize(("path", "bundle"), PAGES)
async def test_pages_are_ours_with_a_strict_policy(
    client: httpx.AsyncClient, path: str, bundle: str
) -> None:
    response = await page(client, path)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-cache"
    assert bundle in response.text
    # No CDN, no other host: not a single absolute URL in the page.
    assert re.findall(r"https?:|//[\w.-]+\.", response.text) == []
    assert "<script>" not in response.text and "<style" not in response.text


@pytest.mark.parametrize(("path", "bundle"), PAGES)
async def test_every_file_a_page_names_is_ours_and_answers(
    client: httpx.AsyncClient, path: str, bundle: str
) -> None:
    response = await page(client, path)
    links = Links()
    links.feed(response.text)
    assert len(links.urls) >= 3
    for src in links.urls:
        url = urlsplit(urljoin(str(response.url), src))
        assert (url.scheme, url.netloc) == ("http", "meterql.test"), src
        assert url.path.startswith("/static/"), src
        asset = await client.get(url.path + "?" + url.query)
        assert asset.status_code == 200, src
        assert asset.headers["content-type"] == MEDIA_TYPES[url.path[url.path.rfind("."):]]
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["x-content-type-options"] == "nosniff"
        # The URL names the content: a changed file is a new URL, so caching a year is safe.
        (version,) = parse_qs(url.query)["v"]
        assert hashlib.sha256(asset.content).hexdigest().startswith(version)


async def test_the_dashboard_carries_the_page_queries_as_shipped(
    client: httpx.AsyncClient,
) -> None:
    # The documents docs/graphql.md shows are the ones the dashboard sends.
    links = Links()
    links.feed((await page(client, "/")).text)
    assert links.data == {"mq-doc-billing": page_query("billing-page"),
                          "mq-doc-usage": page_query("metrics-page")}
    assert set(PAGE_QUERIES) == {"billing-page", "metrics-page", "budgets-page"}


async def test_the_dashboard_is_for_everyone_the_api_decides(client: httpx.AsyncClient) -> None:
    # The page holds no account's data: no token is needed to load it, and
    # any Accept gets it (a browser's, curl's).
    for accept in ("text/html", "*/*", "application/json"):
        response = await client.get("/", headers={"accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert (await client.post("/")).status_code == 405


async def test_a_cached_file_is_not_sent_again(client: httpx.AsyncClient) -> None:
    first = await client.get("/static/meterql/explorer.js")
    again = await client.get("/static/meterql/explorer.js",
                             headers={"if-none-match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


@pytest.mark.parametrize(
    "path",
    ["/static/nope.js", "/static/VERSIONS", "/static/README.md",
     "/static/../app.py", "/static/graphiql", "/static/"],
)
async def test_only_listed_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize(
    ("path", "licence"),
    [("graphiql/LICENSE-graphiql.txt", "MIT License"),
     ("graphiql/LICENSE-react.txt", "MIT License"),
     ("graphiql/LICENSE-react-dom.txt", "MIT License"),
     ("swagger-ui/LICENSE.txt", "Apache License"),
     ("swagger-ui/NOTICE.txt", "swagger-ui"),
     ("uplot/LICENSE.txt", "MIT License")],
)
async def test_licences_ship_and_are_served(
    client: httpx.AsyncClient, path: str, licence: str
) -> None:
    assert licence in (STATIC / path).read_text("utf-8")
    response = await client.get(f"/static/{path}")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert licence in response.text


def test_vendored_files_are_the_pinned_ones() -> None:
    """Each file listed in static/VERSIONS is there, unchanged, with its package's licence."""
    lines = [line.split() for line in (STATIC / "VERSIONS").read_text("utf-8").splitlines()
             if line and not line.startswith("#")]
    assert len(lines) >= 8
    packages: dict[str, set[str]] = {}
    for digest, path, source in lines:
        assert hashlib.sha256((STATIC / path).read_bytes()).hexdigest() == digest, path
        spec, _, file = source.partition(":")
        packages.setdefault(spec, set()).add(file)
    assert all({"LICENSE"} & files for files in packages.values()), packages
    assert {spec.rpartition("@")[0] for spec in packages} == {
        "graphiql", "react", "react-dom", "swagger-ui-dist", "uplot"}


async def test_introspection_off_hides_the_explorer_not_the_docs(
    settings: Settings, db: Database
) -> None:
    app = create_app(settings.model_copy(update={"introspection": False}), database=db,
                     clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as client:
        explorer = await client.get("/graphql", headers=HTML)
        assert explorer.status_code == 404
        assert "graphiql" not in explorer.text.lower()
        # The reference shows only what /v1/openapi.json already tells anyone.
        await page(client, "/v1/docs")
