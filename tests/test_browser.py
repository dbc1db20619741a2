"""The explorer and the /v1 reference in a real browser, with no network but ours.

A uvicorn server on a free loopback port serves the golden data set; Debian's
Chromium (headless, driven by Playwright) opens each page. Any request to
another origin is refused and fails the test: that is the proof the pages
work air-gapped. CSP violations and uncaught page errors fail it too.
Screenshots go to ``test-artifacts/`` (``METERQL_TEST_ARTIFACTS`` overrides).

Without Chromium or the playwright package these tests skip and say why;
``METERQL_REQUIRE_BROWSER=1`` (CI sets it) makes that a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.rest_compat.routes import ROUTES
from tests.conftest import NOW
from tests.golden import ACME_TOKEN, REVOKED_TOKEN, auth, seed
from tests.servers import serving

CHROMIUM = Path(os.environ.get("METERQL_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("METERQL_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "test-artifacts")
# Generous: two shared cores, a 1.7 MB Swagger bundle to parse.
TIMEOUT_MS = 60_000
QUERY = """query Summary {
  metricsSummary(days: 7) {
    periodDays
    totalRequests
    totalTokens
    totalTokensIn
    totalTokensOut
    activeInstances
    uniqueModels
    estimatedCostUsd
  }
}"""
# Collects CSP violations from the page's first script on.
WATCH_CSP = """window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});"""


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install '.[test]')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set METERQL_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def base_url(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app under uvicorn, in a thread, on a free port: the golden data at NOW."""
    path = tmp_path_factory.mktemp("browser") / "meterql.db"
    shutil.copy(sqlite_template, path)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}")

    async def seeded() -> None:
        db = Database.from_settings(settings)
        try:
            await seed(db)
        finally:
            await db.dispose()

    asyncio.run(seeded())
    with serving(create_app(settings, clock=lambda: NOW)) as url:
        yield url


class Offline:
    """A browser page that may talk to ``origin`` only, and remembers what it tried."""

    def __init__(self, browser: Any, origin: str, **options: Any) -> None:
        self.origin = origin
        self.foreign: list[str] = []
        self.errors: list[str] = []
        options = {"viewport": {"width": 1280, "height": 860}, "locale": "en-US", **options}
        self.context = browser.new_context(**options)
        self.context.add_init_script(WATCH_CSP)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def check(self) -> None:
        assert self.foreign == [], f"requests left the server's origin: {self.foreign}"
        assert self.page.evaluate("window.__cspViolations") == []
        assert self.errors == []

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser()
    if reason is not None:
        if os.environ.get("METERQL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"METERQL_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def offline(base_url: str, browser: Any) -> Iterator[Offline]:
    # base_url first: Playwright's sync API keeps an event loop running in
    # this thread, and the server's set-up needs asyncio.run.
    tab = Offline(browser, base_url)
    yield tab
    tab.context.close()


def editor_text(offline: Offline, selector: str) -> str:
    """The text of one of GraphiQL's CodeMirror editors."""
    text: str = offline.page.evaluate(
        "(s) => document.querySelector(s + ' .CodeMirror').CodeMirror.getValue()", selector
    )
    return text


def test_graphiql_runs_a_query_with_the_token(offline: Offline, base_url: str) -> None:
    page = offline.page
    page.goto(base_url + "/graphql")
    page.wait_for_selector(".graphiql-query-editor .CodeMirror")
    page.fill("#mq-token", ACME_TOKEN)
    page.press("#mq-token", "Enter")
    page.wait_for_selector("#mq-token-state:text('token accepted')")
    page.evaluate(
        "(q) => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q)",
        QUERY,
    )
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "() => document.querySelector('.graphiql-response .CodeMirror')"
        ".CodeMirror.getValue().includes('totalRequests')"
    )
    shown = json.loads(editor_text(offline, ".graphiql-response"))

    api = httpx.post(base_url + "/graphql", json={"query": QUERY}, headers=auth())
    assert shown == api.json()
    summary = shown["data"]["metricsSummary"]
    rest = httpx.get(base_url + "/v1/metrics/summary?days=7", headers=auth()).json()
    assert (summary["totalRequests"], summary["estimatedCostUsd"]) == (
        rest["total_requests"], rest["estimated_cost_usd"])
    # The numbers are on screen, not only in the editor's model.
    visible = page.inner_text(".graphiql-response")
    assert f'"totalRequests": {summary["totalRequests"]}' in visible
    offline.screenshot("graphiql.png")
    offline.check()

    # The token outlives a reload (kept in this browser's localStorage).
    page.reload()
    page.wait_for_selector("#mq-token-state:text('token accepted')")
    assert page.input_value("#mq-token") == ACME_TOKEN
    offline.check()


def graphql_posts(offline: Offline) -> list[str]:
    """Start recording the operations the page POSTs to /graphql (by name)."""
    seen: list[str] = []

    def record(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/graphql"):
            body = json.loads(request.post_data or "{}")
            seen.append(body.get("operationName") or body.get("query", "")[:40])

    offline.page.on("request", record)
    return seen


def test_the_explorer_asks_nothing_before_a_token_and_says_what_it_made_of_one(
    offline: Offline, base_url: str
) -> None:
    page = offline.page
    posts = graphql_posts(offline)
    page.goto(base_url + "/graphql")
    page.wait_for_selector(".graphiql-query-editor .CodeMirror")
    page.wait_for_selector("#mq-token-state:text('no token')")
    page.wait_for_timeout(500)
    # No introspection without a token, so no 401 anywhere on the page.
    assert posts == []
    assert "401" not in page.inner_text("body")
    assert "Not authenticated" not in page.inner_text("body")

    # A revoked token is said to be refused at once, and the schema is not asked for.
    page.fill("#mq-token", REVOKED_TOKEN)
    page.press("#mq-token", "Enter")
    state = page.locator("#mq-token-state")
    page.wait_for_selector("#mq-token-state[data-state='refused']")
    assert "refused" in state.inner_text()
    assert posts == ["TokenCheck"]
    offline.screenshot("graphiql-refused-token.png")

    # A good one is accepted, and only then is the schema read (with it).
    page.fill("#mq-token", ACME_TOKEN)
    page.press("#mq-token", "Enter")
    page.wait_for_selector("#mq-token-state[data-state='accepted']")
    for _ in range(100):  # GraphiQL asks for the schema once it has the new fetcher
        if "IntrospectionQuery" in posts:
            break
        page.wait_for_timeout(100)
    assert posts[:2] == ["TokenCheck", "TokenCheck"]
    assert "IntrospectionQuery" in posts[2:]
    assert state.inner_text() == "token accepted"
    offline.check()


def test_api_docs_list_every_route_and_show_its_document(
    offline: Offline, base_url: str
) -> None:
    page = offline.page
    page.goto(base_url + "/v1/docs")
    page.wait_for_selector(".opblock-summary-path")
    shown = page.eval_on_selector_all(
        ".opblock", "(blocks) => blocks.map((b) => [b.querySelector('.opblock-summary-method')"
        ".textContent, b.querySelector('.opblock-summary-path').getAttribute('data-path')])",
    )
    assert sorted(map(tuple, shown)) == sorted((route.method, route.path) for route in ROUTES)

    openapi = httpx.get(base_url + "/v1/openapi.json").json()
    route = ROUTES[0]
    operation = openapi["paths"][route.path][route.method.lower()]
    document = operation["x-graphql-document"]
    # Swagger UI's id for an operation: its tag (the page's section) and operationId.
    block = page.locator(f"#operations-{operation['tags'][0]}-{operation['operationId']}")
    block.locator(".opblock-summary").click()
    code = block.locator(".opblock-description-wrapper pre code")
    code.wait_for()
    assert code.inner_text().strip() == document.strip()
    offline.screenshot("api-docs.png")
    offline.check()


def test_the_headers_pane_carries_a_token_too(offline: Offline, base_url: str) -> None:
    page = offline.page
    page.goto(base_url + "/graphql")
    page.wait_for_selector("#mq-token-state:text('no token')")
    page.wait_for_selector(".graphiql-query-editor .CodeMirror")
    page.evaluate(
        "(q) => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q)",
        "{ trialStatus { planName } }",
    )
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "() => document.querySelector('.graphiql-response .CodeMirror')"
        ".CodeMirror.getValue().includes('detail')"
    )
    assert json.loads(editor_text(offline, ".graphiql-response")) == {
        "detail": "Not authenticated"}

    page.click("button:text-is('Headers')")
    headers = page.locator(".graphiql-editor-tool .CodeMirror:visible")
    headers.wait_for()
    headers.evaluate("(e, h) => e.CodeMirror.setValue(h)",
                     json.dumps({"Authorization": f"Bearer {ACME_TOKEN}"}))
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "() => document.querySelector('.graphiql-response .CodeMirror')"
        ".CodeMirror.getValue().includes('planName')"
    )
    assert json.loads(editor_text(offline, ".graphiql-response")) == {
        "data": {"trialStatus": {"planName": "Pro"}}}
    offline.check()
