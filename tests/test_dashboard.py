"""The usage dashboard at / in a real browser: the API's numbers, one request per change.

The same air-gapped Chromium as tests/test_browser.py (no request may leave
the server's origin, no CSP violation, no page error), on the golden data at
NOW. What is on screen is compared with what the API answers to the very
document the page sends, formatted the way a reader sees it: counts with
thousands separators, money rounded half up to cents (the exact value in
the title). Screenshots at desktop and phone width go to ``test-artifacts/``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from meterql.buckets import known_zones
from meterql.queries import page_query
from tests.golden import ACME_TOKEN, INITECH_TOKEN, REVOKED_TOKEN, auth
from tests.test_browser import Offline, base_url, browser  # noqa: F401  (fixtures)

OPERATIONS = {"billing": ("billing-page", "BillingPage"), "usage": ("metrics-page", "MetricsPage")}
PHONE = {"width": 390, "height": 844}


def usd(exact: str) -> str:
    cents = Decimal(exact).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"${cents:,.2f}"


def api(origin: str, view: str, variables: dict[str, Any], token: str = ACME_TOKEN) -> Any:
    """The API's answer to the view's document, as the page asks it."""
    name, operation = OPERATIONS[view]
    response = httpx.post(origin + "/graphql", headers=auth(token), json={
        "query": page_query(name), "operationName": operation, "variables": variables})
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


class Dashboard:
    """The page, and every GraphQL request it sends (operation and variables)."""

    def __init__(self, offline: Offline) -> None:
        self.offline = offline
        self.page = offline.page
        self.sent: list[dict[str, Any]] = []
        self.page.on("request", self._record)

    def _record(self, request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/graphql"):
            self.sent.append(json.loads(request.post_data or "{}"))

    def open(self, origin: str, view: str = "billing", token: str = ACME_TOKEN) -> None:
        self.page.goto(f"{origin}/#{view}")
        self.page.fill("#mq-token", token)
        self.page.press("#mq-token", "Enter")
        if token != REVOKED_TOKEN:
            self.wait_for(view)

    def wait_for(self, view: str) -> None:
        """Until the page shows an answer of ``view`` to its last request."""
        self.page.wait_for_function(
            "(v) => document.getElementById('mq-view').getAttribute('data-view') === v"
            " && !document.getElementById('mq-view').hasAttribute('aria-busy')", arg=view)

    def change(self, selector: str, value: str, view: str) -> None:
        """Pick ``value`` in a control; wait for the request it sends and its answer."""
        with self.page.expect_request(
            lambda r: r.method == "POST" and r.url.endswith("/graphql")
        ):
            self.page.select_option(selector, value)
        self.wait_for(view)

    def figures(self) -> dict[str, tuple[str, str]]:
        """Each figure on screen: (the text shown, its title)."""
        found: dict[str, list[str]] = self.page.eval_on_selector_all(
            "[data-figure]", """(all) => Object.fromEntries(all.map((f) => [
                f.getAttribute('data-figure'),
                [f.querySelector('.mq-figure-value').textContent,
                 f.querySelector('.mq-figure-value').title]]))""")
        return {name: (shown, title) for name, (shown, title) in found.items()}

    def table(self, name: str) -> list[dict[str, str]]:
        """A table's rows as shown, in the order shown, by column key."""
        rows: list[dict[str, str]] = self.page.eval_on_selector_all(
            f"[data-table='{name}'] tbody tr", """(rows) => rows.map((r) => Object.fromEntries(
                [...r.querySelectorAll('td[data-col]')].map((c) =>
                    [c.getAttribute('data-col'), c.textContent])))""")
        return rows


@pytest.fixture
def dashboard(base_url: str, browser: Any) -> Iterator[Dashboard]:  # noqa: F811
    tab = Offline(browser, base_url, timezone_id="UTC")
    yield Dashboard(tab)
    tab.context.close()


def zoned(base_url: str, browser: Any, zone: str, **options: Any) -> Dashboard:  # noqa: F811
    return Dashboard(Offline(browser, base_url, timezone_id=zone, **options))


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_the_usage_view_shows_the_apis_numbers_in_the_readers_zone(
    base_url: str, browser: Any, zone: str  # noqa: F811
) -> None:
    board = zoned(base_url, browser, zone)
    try:
        board.open(base_url, "usage")
        # The browser's zone is the default, and the first request asks in it.
        assert board.page.input_value("#mq-tz") == zone
        assert board.sent[-1]["variables"]["tz"] == zone
        board.change("#mq-range", "7", "usage")
        sent = board.sent[-1]
        assert sent["operationName"] == "MetricsPage"
        assert sent["query"] == page_query("metrics-page")
        assert sent["variables"] == {"tz": zone, "granularity": "DAY", "groupBy": "MODEL",
                                     "grouped": True, "days": 7}
        data = api(base_url, "usage", sent["variables"])
        usage = data["viewer"]["usage"]
        totals = usage["totals"]
        shown = board.figures()
        for key in ("requests", "tokensIn", "tokensOut", "totalTokens"):
            assert shown[key][0] == f"{totals[key]:,}", key
        assert shown["estimatedCostUsd"] == (usd(totals["estimatedCostUsd"]),
                                             totals["estimatedCostUsd"])
        # The range as the API resolved it in this zone.
        line = board.page.inner_text(".mq-range-line")
        assert zone in line and "by day" in line

        models = {m["name"]: m["usage"]["totals"] for m in data["viewer"]["models"]}
        rows = board.table("models")
        assert {row["name"] for row in rows} == set(models)
        for row in rows:
            expected = models[row["name"]]
            assert row["requests"] == f"{expected['requests']:,}"
            assert row["totalTokens"] == f"{expected['totalTokens']:,}"
            assert row["cost"] == usd(expected["estimatedCostUsd"])
        instances = {e["node"]["id"]: e["node"]["usage"]["totals"]
                     for e in data["viewer"]["instances"]["edges"]}
        for row in board.table("instances"):
            assert row["tokensIn"] == f"{instances[row['id']]['tokensIn']:,}"
            assert row["cost"] == usd(instances[row["id"]]["estimatedCostUsd"])
        # The chart stacks the range's models: its legend names each one.
        legend = board.page.inner_text(".mq-chart .u-legend")
        assert all(group["key"] in legend for group in usage["groups"])
        board.offline.screenshot(f"dashboard-usage-{zone.replace('/', '-')}.png")
        board.offline.check()
    finally:
        board.offline.context.close()


def test_the_zone_decides_the_days(base_url: str) -> None:  # noqa: F811
    # The test above is only as good as its two zones disagreeing on the golden data.
    def requests(zone: str) -> int:
        variables = {"tz": zone, "days": 7, "granularity": "DAY", "groupBy": None}
        value: int = api(base_url, "usage", variables)["viewer"]["usage"]["totals"]["requests"]
        return value

    assert requests("UTC") != requests("Asia/Kolkata")


def test_the_billing_view_shows_plan_trial_and_allowances(
    dashboard: Dashboard, base_url: str  # noqa: F811
) -> None:
    dashboard.open(base_url, "billing")
    sent = dashboard.sent[-1]
    assert (sent["operationName"], sent["query"]) == ("BillingPage", page_query("billing-page"))
    data = api(base_url, "billing", sent["variables"])
    plan, period = data["billing"]["plan"], data["billing"]["usage"]
    page = dashboard.page
    card = page.inner_text("[data-card='plan']")
    assert plan["planName"] in card and plan["status"] in card
    assert f"${plan['priceCents'] // 100}.{plan['priceCents'] % 100:02d} / {plan['billingCycle']}" in card
    trial = data["trialStatus"]
    assert page.inner_text("[data-figure='trial-days'] .mq-figure-value") == (
        f"{trial['trialDaysRemaining']} days left")

    def allowance(name: str) -> str:
        return page.inner_text(f"[data-allowance='{name}'] .mq-allowance-text")

    share = 100 * period["totalTokens"] / period["tokenAllowance"]
    assert allowance("tokens") == (
        f"{period['totalTokens']:,} of {period['tokenAllowance']:,} ({share:.1f}%)")
    assert allowance("instances").startswith(
        f"{period['activeInstances']} of {period['instanceLimit']} ")
    sites = period["maxSitesPerNode"] * period["webhostNodes"]
    assert allowance("sites").startswith(f"{period['totalHostedSites']} of {sites} ")
    assert dashboard.figures()["period-cost"] == (usd(period["totalCostUsd"]),
                                                  period["totalCostUsd"])

    usage = data["viewer"]["usage"]
    assert dashboard.figures()["estimatedCostUsd"][0] == usd(usage["totals"]["estimatedCostUsd"])
    instances = {e["node"]["id"]: e["node"] for e in data["viewer"]["instances"]["edges"]}
    rows = dashboard.table("instances")
    assert [row["id"] for row in rows] and {row["id"] for row in rows} == set(instances)
    # Sorted by cost, most first; a click on "Requests" sorts by requests, and
    # sends nothing.
    costs = [Decimal(instances[row["id"]]["usage"]["totals"]["estimatedCostUsd"]) for row in rows]
    assert costs == sorted(costs, reverse=True)
    before = len(dashboard.sent)
    page.click("[data-table='instances'] th:nth-child(4) button")
    requests = [int(row["requests"].replace(",", "")) for row in dashboard.table("instances")]
    assert requests == sorted(requests, reverse=True)
    page.click("[data-table='instances'] th:nth-child(4) button")
    requests = [int(row["requests"].replace(",", "")) for row in dashboard.table("instances")]
    assert requests == sorted(requests)
    assert len(dashboard.sent) == before
    dashboard.offline.screenshot("dashboard-billing.png")
    dashboard.offline.check()


def test_each_change_asks_once_and_only_what_it_must(
    dashboard: Dashboard, base_url: str  # noqa: F811
) -> None:
    dashboard.open(base_url, "usage")
    assert len(dashboard.sent) == 1
    steps = [
        ("#mq-range", "90", {"days": 90}),
        ("#mq-tz", "America/Los_Angeles", {"tz": "America/Los_Angeles"}),
        ("#mq-group", "INSTANCE", {"groupBy": "INSTANCE", "grouped": True}),
        ("#mq-granularity", "WEEK", {"granularity": "WEEK"}),
        ("#mq-group", "", {"groupBy": None, "grouped": False}),
    ]
    for selector, value, asked in steps:
        before = len(dashboard.sent)
        dashboard.change(selector, value, "usage")
        assert len(dashboard.sent) == before + 1, selector
        variables = dashboard.sent[-1]["variables"]
        assert {key: variables[key] for key in asked} == asked, selector
    # What the chart shows is the page's own business: no request.
    before = len(dashboard.sent)
    dashboard.page.select_option("#mq-measure", "totalTokens")
    dashboard.page.wait_for_selector(".mq-chart[data-chart='totalTokens']")
    assert len(dashboard.sent) == before

    # This billing period: the plan's period as local dates of the zone.
    dashboard.change("#mq-range", "period", "usage")
    variables = dashboard.sent[-1]["variables"]
    assert len(dashboard.sent) == before + 1
    plan = api(base_url, "usage", variables)["viewer"]["plan"]
    assert plan["currentPeriodStart"] == "2026-11-01T00:00:00Z"
    # Midnight UTC on the 1st is 17:00 the day before in Los Angeles (PDT).
    assert variables["days"] is None
    assert variables["range"] == {"from": "2026-10-31", "to": "2026-11-30"}

    # A custom range is sent once, with "Show".
    dashboard.page.select_option("#mq-range", "custom")
    dashboard.page.fill("#mq-from", "2026-11-10")
    dashboard.page.fill("#mq-to", "2026-11-20")
    assert len(dashboard.sent) == before + 1
    dashboard.page.click("#mq-apply")
    dashboard.wait_for("usage")
    assert len(dashboard.sent) == before + 2
    assert dashboard.sent[-1]["variables"]["range"] == {"from": "2026-11-10", "to": "2026-11-20"}
    assert "Nov 10, 2026 – Nov 20, 2026" in dashboard.page.inner_text(".mq-range-line")

    # The other view: its own document, the same choices.
    dashboard.page.click("#mq-tab-billing")
    dashboard.wait_for("billing")
    assert len(dashboard.sent) == before + 3
    assert dashboard.sent[-1]["operationName"] == "BillingPage"
    assert dashboard.sent[-1]["variables"]["tz"] == "America/Los_Angeles"
    dashboard.offline.check()


def test_refusals_are_said_in_words(dashboard: Dashboard, base_url: str) -> None:  # noqa: F811
    page = dashboard.page
    page.goto(base_url + "/")
    page.wait_for_selector("#mq-token-state[data-state='none']")
    assert dashboard.sent == []  # nothing is asked without a token
    assert "Paste a bearer token" in page.inner_text("#mq-message")

    dashboard.open(base_url, "usage", REVOKED_TOKEN)
    page.wait_for_selector("#mq-token-state[data-state='refused']")
    assert "refused" in page.inner_text("#mq-message")
    assert page.locator("[data-table]").count() == 0
    dashboard.offline.screenshot("dashboard-refused-token.png")

    # A good token, then a question the API refuses: said, with the API's reason.
    dashboard.open(base_url, "usage", ACME_TOKEN)
    page.select_option("#mq-range", "custom")
    page.fill("#mq-from", "2026-11-20")
    page.fill("#mq-to", "2026-11-01")
    page.click("#mq-apply")
    page.wait_for_selector(".mq-message[data-kind='error']:text('Must not be before')")
    assert page.get_attribute("#mq-token-state", "data-state") == "accepted"
    assert "The server refused this view" in page.inner_text("#mq-message")
    dashboard.offline.screenshot("dashboard-refused-range.png")
    dashboard.offline.check()


def test_a_new_account_sees_empty_states(dashboard: Dashboard, base_url: str) -> None:  # noqa: F811
    dashboard.open(base_url, "usage", INITECH_TOKEN)
    page = dashboard.page
    assert "No usage in this range" in page.inner_text("[data-empty='usage']")
    assert page.locator(".mq-chart").count() == 0
    assert "No instances yet" in page.inner_text("[data-table='instances']")
    assert "No models yet" in page.inner_text("[data-table='models']")
    assert dashboard.figures()["estimatedCostUsd"][0] == "$0.00"
    dashboard.offline.screenshot("dashboard-empty.png")
    page.click("#mq-tab-billing")
    dashboard.wait_for("billing")
    # The free defaults: a plan without a trial.
    assert page.inner_text("[data-figure='trial-days'] .mq-figure-value") == "none"
    dashboard.offline.check()


def test_download_csv_is_the_exports_file(dashboard: Dashboard, base_url: str) -> None:  # noqa: F811
    dashboard.open(base_url, "usage")
    dashboard.change("#mq-range", "7", "usage")
    href = dashboard.page.get_attribute("#mq-csv", "href") or ""
    assert href.startswith("v1/export/usage.csv?")
    with dashboard.page.expect_download() as download:
        dashboard.page.click("#mq-csv")
    saved = download.value
    expected = httpx.get(f"{base_url}/{href}", headers=auth())
    assert expected.status_code == 200
    assert saved.suggested_filename == "usage-2026-11-14-2026-11-20.csv"
    with open(saved.path(), "rb") as file:
        body = file.read()
    assert body == expected.content
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0][3] == "model" and len(rows) > 1
    dashboard.offline.check()


@pytest.mark.parametrize("view", ["billing", "usage"])
def test_a_phone_sees_the_same_without_sideways_scrolling(
    base_url: str, browser: Any, view: str  # noqa: F811
) -> None:
    board = zoned(base_url, browser, "Europe/Berlin", viewport=PHONE, is_mobile=True,
                  has_touch=True)
    try:
        board.open(base_url, view)
        page = board.page
        assert page.locator(".mq-figure").count() >= 3
        # The page fits the screen; only the tables scroll inside their frames.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        chart = page.locator(".mq-chart canvas").bounding_box()
        assert chart is not None and chart["width"] <= PHONE["width"]
        board.offline.screenshot(f"dashboard-{view}-phone.png")
        board.offline.check()
    finally:
        board.offline.context.close()


def test_every_zone_offered_is_one_the_api_knows(dashboard: Dashboard, base_url: str) -> None:  # noqa: F811
    dashboard.page.goto(base_url + "/")
    offered = dashboard.page.eval_on_selector_all("#mq-tz option", "(o) => o.map((x) => x.value)")
    assert len(offered) > 300 and "UTC" in offered and "Asia/Kolkata" in offered
    assert sorted(set(offered) - known_zones()) == []
    dashboard.offline.check()


def test_a_token_that_may_not_read_is_said_so(dashboard: Dashboard, base_url: str) -> None:  # noqa: F811
    # The server's answer to a token without the read scope (tests/test_graphql.py
    # holds the server to it), handed to the page for its own request.
    def forbidden(route: Any) -> None:
        route.fulfill(status=200, json={"data": None, "errors": [{
            "message": "This token lacks the 'read' scope", "path": ["viewer"],
            "extensions": {"code": "FORBIDDEN"}}]})

    dashboard.page.route("**/graphql", forbidden)
    dashboard.open(base_url, "usage", REVOKED_TOKEN)
    page = dashboard.page
    page.wait_for_selector("#mq-token-state[data-state='forbidden']")
    assert "may not read" in page.inner_text("#mq-token-state")
    assert "read scope" in page.inner_text("#mq-message")
    assert page.locator("[data-table]").count() == 0
    assert page.is_hidden("#mq-csv")
    dashboard.offline.check()
