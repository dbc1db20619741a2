"""Bad input on every route answers a clean 4xx, never a 500 (hardening).

Hostile or broken values in each place a client controls: ``days`` on every
route that takes it, ``instance_id`` on the chart, the ``Authorization``
header on every route, and the JSON bodies of ``POST /v1/usage/events`` and
``POST /graphql``. Each case pins the exact status (401 vs 404 vs 422, as
the contract and ``test_rest_errors.py`` set them) and checks that the body
is JSON and shows nothing of the internals (no traceback, no SQL, no driver).

The client here turns an exception escaping the app into a 500 answer, as a
server would, instead of raising it in the test: a crash is then a failing
status like any other.

Cases that once answered 500 (fixed with these tests): a NUL byte in a
chart ``instance_id`` or in an ingested string field on PostgreSQL (which
cannot store NUL), a lone surrogate (JSON ``"\\ud800"``) echoed in a 422 body
(which could not be encoded as UTF-8), and ``/graphql`` bodies that are
invalid UTF-8, nested deeper than the decoder's stack, or JSON but no object.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from meterql.db.engine import Database
from meterql.rest_compat.routes import ROUTES
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, auth, seed

EVENTS_PATH = "/v1/usage/events"
CHART_PATH = "/v1/billing/usage/chart"
# Words that only a leaked traceback or SQL statement would put in a body.
LEAKS = ("Traceback", "sqlalchemy", "SELECT", "asyncpg", "sqlite3", 'File "')
# The days bounds of every route that takes `days` (the contract's table).
DAYS_BOUNDS = {
    "/v1/metrics/summary": (7, 90),
    "/v1/metrics/instances": (7, 90),
    "/v1/metrics/models": (7, 90),
    "/v1/metrics/usage": (7, 90),
    CHART_PATH: (1, 366),
}
NOT_AUTHENTICATED = {"detail": "Not authenticated"}
INVALID = {"detail": "Invalid authentication credentials"}
INSTANCE_NOT_FOUND = b'{"detail":"Instance not found"}'


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


def _without_inputs(value: Any) -> Any:
    """The body without the ``input`` pydantic echoes: the client's own text may say SELECT."""
    if isinstance(value, dict):
        return {k: _without_inputs(v) for k, v in value.items() if k != "input"}
    if isinstance(value, list):
        return [_without_inputs(v) for v in value]
    return value


def clean(response: httpx.Response, status: int) -> Any:
    """The decoded JSON body of an answer that has ``status`` and leaks nothing."""
    assert response.status_code != 500, response.text
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.text
    body = json.loads(response.content)  # strict: the body is JSON, whatever the header says
    shown = json.dumps(_without_inputs(body), ensure_ascii=False)
    for word in LEAKS:
        assert word not in shown, (word, response.text)
    return body


def test_days_routes_are_the_route_tables() -> None:
    """A new route taking `days` must join the tables below."""
    with_days = {r.path for r in ROUTES if any(p.name == "days" for p in r.params)}
    assert with_days == set(DAYS_BOUNDS)


# --- days ------------------------------------------------------------------------------

# (id, raw query-string value (already percent-encoded), pydantic error type, which bound).
BAD_DAYS = [
    ("huge", "99999999999999999999", "less_than_equal", "max"),
    ("beyond-every-range", "367", "less_than_equal", "max"),
    ("4300-digits", "9" * 4300, "less_than_equal", "max"),
    ("5000-digits", "9" * 5000, "int_parsing_size", None),
    ("zero", "0", "greater_than_equal", "min"),
    ("negative", "-1", "greater_than_equal", "min"),
    ("minus-zero", "-0", "greater_than_equal", "min"),
    ("huge-negative", "-99999999999999999999", "greater_than_equal", "min"),
    ("float", "7.5", "int_parsing", None),
    ("float-near-int", "30.0000000001", "int_parsing", None),
    ("exponent", "1e1", "int_parsing", None),
    ("overflowing-float", "1e400", "int_parsing", None),
    ("inf", "inf", "int_parsing", None),
    ("nan", "NaN", "int_parsing", None),
    ("hex", "0x10", "int_parsing", None),
    ("arabic-indic-digits", quote("٣٠"), "int_parsing", None),
    ("devanagari-digits", quote("३०"), "int_parsing", None),
    ("fullwidth-digits", quote("３０"), "int_parsing", None),
    ("math-bold-digits", quote("𝟑𝟎"), "int_parsing", None),
    ("superscript", quote("³⁰"), "int_parsing", None),
    ("empty", "", "int_parsing", None),
    ("blank", "%20%20", "int_parsing", None),
    ("nul", "%00", "int_parsing", None),
    ("digits-then-nul", "30%00", "int_parsing", None),
    ("invalid-utf8", "%ff%fe", "int_parsing", None),
    ("injection", quote("30; DROP TABLE usage_events; --"), "int_parsing", None),
    ("or-true", quote("30 OR 1=1"), "int_parsing", None),
    ("long-garbage", "a" * 10_000, "int_parsing", None),
]


@pytest.mark.parametrize(("raw", "error_type", "bound"), [c[1:] for c in BAD_DAYS],
                         ids=[c[0] for c in BAD_DAYS])
async def test_bad_days_is_422_on_every_route(
    raw_client: httpx.AsyncClient, raw: str, error_type: str, bound: str | None
) -> None:
    for path, (low, high) in DAYS_BOUNDS.items():
        response = await raw_client.get(f"{path}?days={raw}", headers=auth())
        (entry,) = clean(response, 422)["detail"]
        assert (entry["type"], entry["loc"]) == (error_type, ["query", "days"]), path
        if bound is not None:
            assert entry["ctx"] == ({"ge": low} if bound == "min" else {"le": high}), path


async def test_bad_days_with_a_bad_instance_id_reports_days(
    raw_client: httpx.AsyncClient,
) -> None:
    # Parameters are validated before anything is looked up: 422, not 404.
    response = await raw_client.get(f"{CHART_PATH}?days=-5&instance_id=nope", headers=auth())
    (entry,) = clean(response, 422)["detail"]
    assert entry["type"] == "greater_than_equal"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**31, "Int cannot represent non 32-bit signed integer value"),
        (10**400, "Int cannot represent non 32-bit signed integer value"),
        (-1, "days: Input should be greater than or equal to"),
        (7.5, "Int cannot represent non-integer value"),
        ("30", "Int cannot represent non-integer value"),
        ("٣٠", "Int cannot represent non-integer value"),
        (None, "Expected value of non-null type 'Int!' not to be None"),
        ([30], "Int cannot represent non-integer value"),
    ],
    ids=["2**31", "10**400", "negative", "float", "string", "unicode-digits", "null", "list"],
)
async def test_bad_days_is_a_graphql_error(
    raw_client: httpx.AsyncClient, value: Any, message: str
) -> None:
    """The same bad values through GraphQL: a GraphQL error naming the problem, never masked."""
    for field in ["metricsSummary", "instanceUsage", "modelBreakdown", "usageTimeseries",
                  "usageChart"]:
        response = await raw_client.post(
            "/graphql",
            json={"query": f"query($d: Int!) {{ {field}(days: $d) {{ __typename }} }}",
                  "variables": {"d": value}},
            headers=auth(),
        )
        body = clean(response, 200)
        assert body["data"] is None, field
        (error,) = body["errors"]
        assert message in error["message"], field


# --- instance_id on the chart -------------------------------------------------------------

# Every one answers as an instance nobody owns: 404 {"detail": "Instance not found"}.
BAD_INSTANCE_IDS = [
    ("or-true", "' OR 1=1 --"),
    ("or-true-quoted", "inst-a' OR '1'='1"),
    ("drop-table", "inst-a'; DROP TABLE instances; --"),
    ("union", "x' UNION SELECT instance_id FROM instances --"),
    ("like-percent", "%"),  # an exact match, not a LIKE pattern
    ("like-underscore", "inst-_"),
    ("like-prefix", "inst-%"),
    ("nul", "\x00"),
    ("nul-suffix", "inst-a\x00"),
    ("nul-inside", "inst\x00-a"),
    ("10k-chars", "i" * 10_000),
    ("201-chars", "i" * 201),
    ("unicode", "инстанс-а"),
    ("emoji", "🤖💥"),
    ("combining", "inst-a\u0301"),
    ("rtl-override", "\u202einst-a"),
    ("zero-width", "inst\u200b-a"),
    ("slash", "../inst-a"),
    ("backslash", "..\\inst-a"),
    ("encoded-slash", "inst-a%2F.."),
    ("trailing-space", "inst-a "),
    ("leading-space", " inst-a"),
    ("tab", "inst-a\t"),
    ("newline", "inst-a\n"),
    ("upper-case", "INST-A"),
    ("other-tenant", "inst-g"),
]


@pytest.mark.parametrize("instance", [c[1] for c in BAD_INSTANCE_IDS],
                         ids=[c[0] for c in BAD_INSTANCE_IDS])
async def test_bad_instance_id_on_the_chart_is_not_found(
    raw_client: httpx.AsyncClient, instance: str
) -> None:
    """404 over REST; NOT_FOUND through GraphQL, with the value as a variable."""
    response = await raw_client.get(CHART_PATH, params={"instance_id": instance}, headers=auth())
    clean(response, 404)
    assert response.content == INSTANCE_NOT_FOUND
    await _assert_graphql_not_found(raw_client, instance)


async def _assert_graphql_not_found(client: httpx.AsyncClient, instance: str) -> None:
    response = await client.post(
        "/graphql",
        content=json.dumps({
            "query": "query($i: String) { usageChart(instanceId: $i) { periodLabel } }",
            "variables": {"i": instance},
        }),  # ensure_ascii: a lone surrogate travels as "\ud800"
        headers={**auth(), "content-type": "application/json"},
    )
    body = clean(response, 200)
    (error,) = body["errors"]
    assert error["message"] == "Instance not found"
    assert error["extensions"] == {"code": "NOT_FOUND"}


async def test_lone_surrogates_in_graphql_are_not_found(raw_client: httpx.AsyncClient) -> None:
    # Only JSON can carry these (a query string decodes to U+FFFD); they once
    # reached the database driver, which cannot encode them.
    for instance in ["\ud800", "inst-a\udfff"]:
        await _assert_graphql_not_found(raw_client, instance)


@pytest.mark.parametrize("raw", ["%ff%fe", "%ED%A0%80", "%C0%AF", "inst-a%00"],
                         ids=["invalid-utf8", "encoded-surrogate", "overlong-slash", "nul"])
async def test_undecodable_instance_id_on_the_chart_is_404(
    raw_client: httpx.AsyncClient, raw: str
) -> None:
    response = await raw_client.get(f"{CHART_PATH}?instance_id={raw}", headers=auth())
    clean(response, 404)
    assert response.content == INSTANCE_NOT_FOUND


async def test_the_chart_still_finds_a_real_instance(raw_client: httpx.AsyncClient) -> None:
    # The control for the 404s above: the same request with a good id answers.
    response = await raw_client.get(CHART_PATH, params={"instance_id": "inst-a"}, headers=auth())
    assert clean(response, 200)["period_label"] == "Last 30 days"


# --- Authorization ------------------------------------------------------------------------

# Every route of the table, plus GraphQL over POST and GET.
AUTH_CALLS = [(r.method, r.path) for r in ROUTES] + [("POST", "/graphql"), ("GET", "/graphql")]

BAD_AUTHORIZATION: list[tuple[str, bytes, dict[str, str]]] = [
    ("empty", b"", NOT_AUTHENTICATED),
    ("scheme-only", b"Bearer", NOT_AUTHENTICATED),
    ("blank-token", b"Bearer ", NOT_AUTHENTICATED),
    ("spaces-only", b"Bearer      ", NOT_AUTHENTICATED),
    ("tab-separated", b"Bearer\t" + ACME_TOKEN.encode(), NOT_AUTHENTICATED),
    ("basic", b"Basic xxx", NOT_AUTHENTICATED),
    ("basic-base64", b"Basic YWNtZTpwYXNzd29yZA==", NOT_AUTHENTICATED),
    ("token-without-scheme", ACME_TOKEN.encode(), NOT_AUTHENTICATED),
    ("100k-without-scheme", b"x" * 100_000, NOT_AUTHENTICATED),
    ("nul-scheme", b"\x00Bearer " + ACME_TOKEN.encode(), NOT_AUTHENTICATED),
    ("bearer-100k", b"Bearer " + b"x" * 100_000, INVALID),
    ("bearer-513", b"Bearer " + b"x" * 513, INVALID),
    ("latin-1", b"Bearer \xe9t\xe9-\xff\xfe", INVALID),
    ("utf-8", "Bearer jéton-🔑".encode(), INVALID),
    ("nul", b"Bearer \x00", INVALID),
    ("nul-suffix", b"Bearer " + ACME_TOKEN.encode() + b"\x00", INVALID),
    ("nul-inside", b"Bearer acme\x00-read-token-0001", INVALID),
    ("two-tokens", b"Bearer " + ACME_TOKEN.encode() + b" " + ACME_TOKEN.encode(), INVALID),
    ("sql", b"Bearer ' OR 1=1 --", INVALID),
]


def _call(client: httpx.AsyncClient, method: str, path: str,
          headers: dict[str, Any]) -> Any:
    if path == "/graphql" and method == "GET":
        return client.get(path, params={"query": "{ trialStatus { status } }"}, headers=headers)
    if path == "/graphql":
        return client.post(path, json={"query": "{ trialStatus { status } }"}, headers=headers)
    return client.request(method, path, json=[], headers=headers)


@pytest.mark.parametrize(("value", "body"), [c[1:] for c in BAD_AUTHORIZATION],
                         ids=[c[0] for c in BAD_AUTHORIZATION])
async def test_bad_authorization_is_401_on_every_route(
    raw_client: httpx.AsyncClient, value: bytes, body: dict[str, str]
) -> None:
    for method, path in AUTH_CALLS:
        response = await _call(raw_client, method, path, {"Authorization": value})
        assert clean(response, 401) == body, (method, path)
        assert response.headers["www-authenticate"] == "Bearer", (method, path)


async def test_repeated_authorization_headers(raw_client: httpx.AsyncClient) -> None:
    # Starlette reads the first of repeated headers; a bad first one is refused
    # even when a good one follows (never "any of them").
    headers = [("Authorization", "Bearer nope-nope-nope"), ("Authorization", f"Bearer {ACME_TOKEN}")]
    for method, path in AUTH_CALLS:
        response = await _call(raw_client, method, path, headers)  # type: ignore[arg-type]
        assert clean(response, 401) == INVALID, (method, path)


async def test_extra_spaces_around_a_valid_token_are_tolerated(
    raw_client: httpx.AsyncClient,
) -> None:
    # Our choice (auth.bearer_token strips the credentials): spaces after the
    # scheme or at the end do not turn a valid token into a 401.
    for value in [f"Bearer   {ACME_TOKEN}", f"Bearer {ACME_TOKEN}   ", f"BEARER {ACME_TOKEN}"]:
        response = await raw_client.get("/v1/billing/trial-status",
                                        headers={"Authorization": value})
        assert clean(response, 200)["status"] == "trialing", value


# --- JSON bodies of POST /v1/usage/events ------------------------------------------------

GOOD_EVENT = (
    '{"event_id": "x1", "instance_id": "inst-a", "model": "gpt-4o", '
    '"timestamp": "2026-11-20T10:00:00Z", "tokens_in": 10, "tokens_out": 10}'
)


def _with(field: str, raw_json_value: str) -> bytes:
    """A one-event batch whose ``field`` holds ``raw_json_value`` (JSON text, as sent)."""
    event = json.loads(GOOD_EVENT)
    event[field] = "@@"
    return ("[" + json.dumps(event).replace('"@@"', raw_json_value) + "]").encode()


# (id, body, error type of the first entry, its loc). All answer 422 in FastAPI's shape.
BAD_BODIES: list[tuple[str, bytes, str, list[Any]]] = [
    ("empty", b"", "missing", ["body"]),
    ("truncated", b'[{"event_id": "x1"', "json_invalid", ["body", 18]),
    ("truncated-list", b"[", "json_invalid", ["body", 1]),
    ("trailing-comma", ("[" + GOOD_EVENT + ",]").encode(), "json_invalid",
     ["body", len(GOOD_EVENT) + 2]),
    ("trailing-garbage", b"[] x", "json_invalid", ["body", 3]),
    ("single-quotes", b"[{'event_id': 'x1'}]", "json_invalid", ["body", 2]),
    ("object", GOOD_EVENT.encode(), "list_type", ["body"]),
    ("wrapped", b'{"events": []}', "list_type", ["body"]),
    ("string", b'"[]"', "list_type", ["body"]),
    ("number", b"42", "list_type", ["body"]),
    ("boolean", b"true", "list_type", ["body"]),
    ("list-of-numbers", b"[1, 2]", "model_type", ["body", 0]),
    ("list-of-strings", b'["x1"]', "model_type", ["body", 0]),
    ("list-of-nulls", b"[null]", "model_type", ["body", 0]),
    ("list-of-lists", b"[[]]", "model_type", ["body", 0]),
    ("nested-500", b"[" * 500 + b"]" * 500, "model_type", ["body", 0]),
    ("nested-500-in-a-field", _with("event_id", '{"a":' * 500 + "1" + "}" * 500), "string_type",
     ["body", 0, "event_id"]),
    ("nested-100k-arrays", b"[" * 100_000 + b"]" * 100_000, "json_invalid", ["body", 0]),
    ("nested-100k-objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "json_invalid",
     ["body", 0]),
    ("nan", _with("tokens_in", "NaN"), "json_invalid", ["body", 0]),
    ("infinity", _with("tokens_in", "Infinity"), "json_invalid", ["body", 0]),
    ("minus-infinity", _with("tokens_out", "-Infinity"), "json_invalid", ["body", 0]),
    ("invalid-utf8", b"\xff\xfe[]", "json_invalid", ["body", 0]),
    # FastAPI's position is that of the first undecodable byte.
    ("invalid-utf8-in-string", ("[" + GOOD_EVENT + "]").encode().replace(b'"x1"', b'"x\xff"'),
     "json_invalid", ["body", len('[{"event_id": "x')]),
    ("1e400-tokens", _with("tokens_in", "1e400"), "int_type", ["body", 0, "tokens_in"]),
    ("5000-digit-tokens", _with("tokens_in", "9" * 5000), "json_invalid", ["body", 0]),
    ("tokens-beyond-limit", _with("tokens_in", str(10**10 + 1)), "less_than_equal",
     ["body", 0, "tokens_in"]),
    ("tokens-beyond-64-bits", _with("tokens_out", str(2**64)), "less_than_equal",
     ["body", 0, "tokens_out"]),
    ("negative-tokens", _with("tokens_in", "-1"), "greater_than_equal",
     ["body", 0, "tokens_in"]),
    ("float-tokens", _with("tokens_in", "10.5"), "int_type", ["body", 0, "tokens_in"]),
    # 10.0 and 1e1 are the integer 10 (JSON has one number type); 1e11 is
    # therefore an integer too, and past the bound.
    ("integral-exponent-beyond-limit", _with("tokens_in", "1e11"), "less_than_equal",
     ["body", 0, "tokens_in"]),
    ("string-tokens", _with("tokens_in", '"10"'), "int_type", ["body", 0, "tokens_in"]),
    ("bool-tokens", _with("tokens_out", "true"), "int_type", ["body", 0, "tokens_out"]),
    ("null-tokens", _with("tokens_in", "null"), "int_type", ["body", 0, "tokens_in"]),
    ("1e400-cost", _with("cost_usd", "1e400"), "less_than_equal", ["body", 0, "cost_usd"]),
    ("1e5000-cost", _with("cost_usd", "1e5000"), "less_than_equal", ["body", 0, "cost_usd"]),
    ("1e999999999-cost", _with("cost_usd", "1e999999999"), "less_than_equal",
     ["body", 0, "cost_usd"]),
    ("1e999999999-tokens", _with("tokens_out", "-1e999999999"), "int_type",
     ["body", 0, "tokens_out"]),
    ("huge-exponent-cost", _with("cost_usd", '"1e999999999"'), "less_than_equal",
     ["body", 0, "cost_usd"]),
    ("nan-string-cost", _with("cost_usd", '"NaN"'), "finite_number", ["body", 0, "cost_usd"]),
    ("negative-cost", _with("cost_usd", '"-0.01"'), "greater_than_equal",
     ["body", 0, "cost_usd"]),
    ("number-as-event-id", _with("event_id", "1"), "string_type", ["body", 0, "event_id"]),
    ("empty-event-id", _with("event_id", '""'), "string_too_short", ["body", 0, "event_id"]),
    ("10k-event-id", _with("event_id", json.dumps("e" * 10_000)), "string_too_long",
     ["body", 0, "event_id"]),
    ("nul-event-id", _with("event_id", '"x\\u0000"'), "string_pattern_mismatch",
     ["body", 0, "event_id"]),
    ("nul-instance-id", _with("instance_id", '"\\u0000"'), "string_pattern_mismatch",
     ["body", 0, "instance_id"]),
    ("nul-model", _with("model", '"gpt-4o\\u0000"'), "string_pattern_mismatch",
     ["body", 0, "model"]),
    ("nul-end-user", _with("end_user_id", '"u\\u0000"'), "string_pattern_mismatch",
     ["body", 0, "end_user_id"]),
    ("nul-conversation", _with("conversation_id", '"\\u0000"'), "string_pattern_mismatch",
     ["body", 0, "conversation_id"]),
    ("surrogate-event-id", _with("event_id", '"\\ud800"'), "string_unicode",
     ["body", 0, "event_id"]),
    ("surrogate-end-user", _with("end_user_id", '"u\\udfff"'), "string_unicode",
     ["body", 0, "end_user_id"]),
    ("surrogate-key", ("[" + GOOD_EVENT[:-1] + ', "\\ud800": 1}]').encode(), "string_unicode",
     ["body", 0]),
    ("injection-timestamp", _with("timestamp", '"2026-11-20\' OR 1=1 --"'), "datetime_from_date_parsing",
     ["body", 0, "timestamp"]),
    ("naive-timestamp", _with("timestamp", '"2026-11-20T10:00:00"'), "timezone_aware",
     ["body", 0, "timestamp"]),
    # The token's account is the event's: a body cannot name another one.
    ("account-id", _with("account_id", '"globex"'), "extra_forbidden",
     ["body", 0, "account_id"]),
    # ISO 8601 with a zone, as GraphQL takes it: no seconds since 1970.
    ("number-timestamp", _with("timestamp", "1763640000"), "datetime_type",
     ["body", 0, "timestamp"]),
    ("float-timestamp", _with("timestamp", "1763640000.5"), "datetime_type",
     ["body", 0, "timestamp"]),
]


@pytest.mark.parametrize(("body", "error_type", "loc"), [c[1:] for c in BAD_BODIES],
                         ids=[c[0] for c in BAD_BODIES])
async def test_bad_ingest_body_is_422(
    raw_client: httpx.AsyncClient, body: bytes, error_type: str, loc: list[Any]
) -> None:
    before = await raw_client.get("/v1/metrics/summary?days=90", headers=auth())
    response = await raw_client.post(
        EVENTS_PATH, content=body,
        headers={**auth(ACME_INGEST_TOKEN), "content-type": "application/json"},
    )
    detail = clean(response, 422)["detail"]
    assert isinstance(detail, list) and detail
    assert all(entry["loc"][0] == "body" for entry in detail), detail
    assert (detail[0]["type"], detail[0]["loc"]) == (error_type, loc)
    # All-or-nothing: a refused batch wrote nothing.
    after = await raw_client.get("/v1/metrics/summary?days=90", headers=auth())
    assert after.json() == before.json()


async def test_a_good_body_is_accepted(raw_client: httpx.AsyncClient) -> None:
    # The control for the table above: the unaltered event goes in.
    response = await raw_client.post(EVENTS_PATH, content=("[" + GOOD_EVENT + "]").encode(),
                                     headers=auth(ACME_INGEST_TOKEN))
    assert clean(response, 200) == {"accepted": 1, "duplicates": 0}


@pytest.mark.parametrize("written", ["10.0", "1e1", "1.0E+1", "10"])
async def test_an_integral_number_is_an_integer(raw_client: httpx.AsyncClient,
                                                written: str) -> None:
    """JSON has one number type: 10.0 and 1e1 are the integer 10 (JSON Schema agrees)."""
    before = (await raw_client.get("/v1/metrics/summary?days=7", headers=auth())).json()
    response = await raw_client.post(
        EVENTS_PATH, content=_with("tokens_in", written),
        headers={**auth(ACME_INGEST_TOKEN), "content-type": "application/json"},
    )
    assert clean(response, 200) == {"accepted": 1, "duplicates": 0}
    after = (await raw_client.get("/v1/metrics/summary?days=7", headers=auth())).json()
    assert after["total_tokens_in"] == before["total_tokens_in"] + 10


async def test_a_surrogate_is_echoed_as_a_replacement_character(
    raw_client: httpx.AsyncClient,
) -> None:
    # The 422 shows what was refused; a lone surrogate cannot be written as
    # UTF-8, so it shows as U+FFFD instead of breaking the answer.
    response = await raw_client.post(EVENTS_PATH, content=_with("event_id", '"a\\ud800b"'),
                                     headers=auth(ACME_INGEST_TOKEN))
    (entry,) = clean(response, 422)["detail"]
    assert entry["input"] == "a\ufffdb"


@pytest.mark.parametrize(
    ("field", "literal", "echo"),
    [("cost_usd", "1e5000", "1E+5000"), ("cost_usd", "1e999999999", "1E+999999999"),
     ("tokens_in", "1e999999999", "1E+999999999"), ("cost_usd", "1e400", 10**400)],
)
async def test_huge_numbers_are_echoed_without_building_them(
    raw_client: httpx.AsyncClient, field: str, literal: str, echo: Any
) -> None:
    # The echo of 1e999999999 as an int took minutes (a one-request DoS), and
    # one of over 4300 digits could not be written (a 500): such numbers are
    # echoed as strings; smaller ones stay numbers, as FastAPI wrote them.
    started = time.monotonic()
    response = await raw_client.post(EVENTS_PATH, content=_with(field, literal),
                                     headers=auth(ACME_INGEST_TOKEN))
    (entry,) = clean(response, 422)["detail"]
    assert entry["input"] == echo
    assert time.monotonic() - started < 5


async def test_deep_nesting_is_echoed_cut_short(raw_client: httpx.AsyncClient) -> None:
    # Echoing 500 nested lists recursed out of the stack (a 500): the echo
    # stops at a depth no record reaches.
    response = await raw_client.post(EVENTS_PATH, content=b"[" * 500 + b"]" * 500,
                                     headers=auth(ACME_INGEST_TOKEN))
    (entry,) = clean(response, 422)["detail"]
    assert "..." in json.dumps(entry["input"])


async def test_nul_is_refused_the_same_through_graphql(raw_client: httpx.AsyncClient) -> None:
    response = await raw_client.post(
        "/graphql",
        json={"query": "mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) "
                       "{ accepted } }",
              "variables": {"e": [{"eventId": "x\x00", "instanceId": "inst-a",
                                   "model": "gpt-4o", "timestamp": "2026-11-20T10:00:00Z",
                                   "tokensIn": 1, "tokensOut": 1}]}},
        headers=auth(ACME_INGEST_TOKEN),
    )
    body = clean(response, 200)
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["loc"] == ["events", 0, "event_id"]


# --- POST /graphql --------------------------------------------------------------------------

NOT_JSON = {"detail": "Unable to parse request body as JSON"}
NOT_AN_OBJECT = {"detail": "The GraphQL request must be a JSON object"}
QUERY = '"{ trialStatus { status } }"'

# (id, body, status, the JSON answer or, for 200s, a fragment of the first error's message).
BAD_GRAPHQL: list[tuple[str, bytes, int, Any]] = [
    ("empty", b"", 400, NOT_JSON),
    ("truncated", b'{"query": "{ trialStatus', 400, NOT_JSON),
    ("invalid-utf8", b'\xff{"query": ' + QUERY.encode() + b"}", 400, NOT_JSON),
    ("nested-100k-arrays", b"[" * 100_000 + b"]" * 100_000, 400, NOT_JSON),
    ("nested-100k-objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400, NOT_JSON),
    ("null", b"null", 400, NOT_AN_OBJECT),
    ("string", b'"{ trialStatus { status } }"', 400, NOT_AN_OBJECT),
    ("number", b"42", 400, NOT_AN_OBJECT),
    ("batch", b"[]", 400, {"detail": "Batching is not enabled"}),
    ("no-query", b"{}", 400, {"detail": "No GraphQL query found in the request"}),
    ("query-not-a-string", b'{"query": 5}', 400,
     {"detail": "The GraphQL operation's `query` must be a string or null, if provided."}),
    ("query-a-list", b'{"query": [' + QUERY.encode() + b"]}", 400,
     {"detail": "The GraphQL operation's `query` must be a string or null, if provided."}),
    ("variables-not-an-object", b'{"query": ' + QUERY.encode() + b', "variables": [1]}', 400,
     {"detail": "The GraphQL operation's `variables` must be an object or null, if provided."}),
    ("variables-a-string", b'{"query": ' + QUERY.encode() + b', "variables": "{}"}', 400,
     {"detail": "The GraphQL operation's `variables` must be an object or null, if provided."}),
    ("extensions-not-an-object", b'{"query": ' + QUERY.encode() + b', "extensions": 1}', 400,
     {"detail": "The GraphQL operation's `extensions` must be an object or null, if provided."}),
    ("unknown-operation", b'{"query": ' + QUERY.encode() + b', "operationName": "Nope"}', 400,
     {"detail": 'Unknown operation named "Nope".'}),
    ("syntax-error", b'{"query": "{ trialStatus { status }"}', 200, "Syntax Error"),
    ("not-graphql", b'{"query": "DROP TABLE api_tokens"}', 200, "Syntax Error"),
    ("unknown-field", b'{"query": "{ nope }"}', 200, "Cannot query field 'nope'"),
    ("unknown-subfield", b'{"query": "{ trialStatus { secret } }"}', 200,
     "Cannot query field 'secret'"),
    ("unknown-argument", b'{"query": "{ billing(accountId: \\"globex\\") { __typename } }"}',
     200, "Unknown argument 'accountId'"),
    ("no-selection", b'{"query": "{ trialStatus }"}', 200, "must have a selection of subfields"),
    ("fragment-cycle", b'{"query": "fragment A on Query { ...A } { ...A }"}', 200,
     "Cannot spread fragment 'A' within itself"),
    ("deep-query", b'{"query": "' + b"{ a " * 10_000 + b'"}', 200, "nested too deeply"),
    ("days-overflow", b'{"query": "{ metricsSummary(days: 99999999999) { periodDays } }"}', 200,
     "Int cannot represent non 32-bit signed integer value"),
    ("nan-variable", b'{"query": "query($d: Int!) { usageChart(days: $d) { periodLabel } }", '
     b'"variables": {"d": NaN}}', 200, "Int cannot represent non-integer value"),
    ("1e400-variable", b'{"query": "query($d: Int!) { usageChart(days: $d) { periodLabel } }", '
     b'"variables": {"d": 1e400}}', 200, "Int cannot represent non-integer value"),
    ("missing-variable", b'{"query": "query($d: Int!) { usageChart(days: $d) { periodLabel } }"}',
     200, "Expected a value of non-null type 'Int!' to be provided"),
    ("read-token-mutation", b'{"query": "mutation { recordUsage(events: []) { accepted } }"}',
     200, "lacks the 'ingest' scope"),
]


@pytest.mark.parametrize(("body", "status", "expected"), [c[1:] for c in BAD_GRAPHQL],
                         ids=[c[0] for c in BAD_GRAPHQL])
async def test_bad_graphql_request(
    raw_client: httpx.AsyncClient, body: bytes, status: int, expected: Any
) -> None:
    # A request that is not a GraphQL request at all is a 400 (Strawberry's
    # words, in our JSON shape); a GraphQL request that fails to parse,
    # validate or coerce is a 200 with `errors`, as GraphQL over HTTP answers
    # application/json requests.
    response = await raw_client.post(
        "/graphql", content=body, headers={**auth(), "content-type": "application/json"}
    )
    answer = clean(response, status)
    if status != 200:
        assert answer == expected
        return
    assert answer.get("data") is None
    assert expected in answer["errors"][0]["message"]
    assert all(e["message"] != "Unexpected error." for e in answer["errors"])


@pytest.mark.parametrize(
    ("query", "status", "expected"),
    [
        ({"query": "{ trialStatus { status } }", "variables": "{"}, 400, NOT_JSON),
        ({"query": "{ trialStatus { status } }", "variables": "%ff"}, 400, NOT_JSON),
        ({"query": "{ trialStatus { status } }", "variables": "[1]"}, 400,
         {"detail": "The GraphQL operation's `variables` must be an object or null, "
                    "if provided."}),
        ({"query": "{ trialStatus { status } }", "variables": "null"}, 200, None),
        ({"query": "{ trialStatus { status"}, 200, "Syntax Error"),
        ({"query": ""}, 400, {"detail": "No GraphQL query found in the request"}),
    ],
    ids=["variables-truncated", "variables-garbage", "variables-a-list", "variables-null",
         "syntax-error", "empty-query"],
)
async def test_bad_graphql_over_get(
    raw_client: httpx.AsyncClient, query: dict[str, str], status: int, expected: Any
) -> None:
    response = await raw_client.get("/graphql", params=query, headers=auth())
    answer = clean(response, status)
    if status == 200 and expected is None:
        assert answer == {"data": {"trialStatus": {"status": "trialing"}}}
    elif status == 200:
        assert expected in answer["errors"][0]["message"]
    else:
        assert answer == expected


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", ""])
async def test_graphql_needs_a_json_body(
    raw_client: httpx.AsyncClient, content_type: str
) -> None:
    response = await raw_client.post(
        "/graphql", content=b'{"query": "{ trialStatus { status } }"}',
        headers={**auth(), "content-type": content_type},
    )
    assert clean(response, 400) == {"detail": "Unsupported content type"}


async def test_unauthenticated_bad_bodies_are_401_first(raw_client: httpx.AsyncClient) -> None:
    # The token is checked before the body is read, on both POST routes.
    for path in [EVENTS_PATH, "/graphql"]:
        response = await raw_client.post(path, content=b"\xff[" * 1000,
                                         headers={"content-type": "application/json"})
        assert clean(response, 401) == NOT_AUTHENTICATED


# --- values written into a GraphQL document ------------------------------------------------

EVENT_LITERAL = ('{eventId: "lit", instanceId: "inst-a", model: "gpt-4o", '
                 'timestamp: "2026-11-20T12:00:00Z", tokensIn: 1, tokensOut: 1')
# A custom scalar refusing a default or an inline literal is invalid input like
# any other: a validation error with the scalar's reason, never INTERNAL.
BAD_LITERALS = {
    "bigint-default": ("query($x: BigInt = 1.5) { trialStatus { planName } x: billing "
                       "{ plan { planName } } }", "BigInt values are JSON integers"),
    "bigint-inline": (f"mutation {{ recordUsage(events: [{EVENT_LITERAL.replace('tokensIn: 1', 'tokensIn: 1.0')}}}]) "
                      "{ accepted } }", "BigInt values are JSON integers"),
    "datetime-inline": (f"mutation {{ recordUsage(events: [{EVENT_LITERAL.replace('2026-11-20T12:00:00Z', 'soon')}}}]) "
                        "{ accepted } }", "Invalid isoformat string"),
    "datetime-naive": (f"mutation {{ recordUsage(events: [{EVENT_LITERAL.replace('12:00:00Z', '12:00:00')}}}]) "
                       "{ accepted } }", "DateTime values need a time zone"),
    "decimal-inline": (f"mutation {{ recordUsage(events: [{EVENT_LITERAL}, costUsd: 1.5}}]) "
                       "{ accepted } }", "Decimal values are sent as strings"),
    "decimal-default": ('query($c: Decimal = "lots") { trialStatus { planName } }',
                        "not a decimal number"),
    "offset-default": ('query($d: OffsetDateTime = "x") { trialStatus { planName } }',
                       "Invalid isoformat string"),
}


@pytest.mark.parametrize("name", list(BAD_LITERALS))
async def test_bad_scalar_literals_are_validation_errors(
    raw_client: httpx.AsyncClient, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    query, reason = BAD_LITERALS[name]
    response = await raw_client.post("/graphql", json={"query": query},
                                     headers=auth(ACME_INGEST_TOKEN))
    body = clean(response, 200)
    assert body["data"] is None
    messages = [e["message"] for e in body["errors"]]
    assert any(reason in m for m in messages), messages
    assert all(e.get("extensions", {}).get("code") != "INTERNAL" for e in body["errors"])
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_number_timestamp_is_refused_by_graphql_too(raw_client: httpx.AsyncClient) -> None:
    mutation = "mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) { accepted } }"
    event = {"eventId": "n1", "instanceId": "inst-a", "model": "gpt-4o",
             "timestamp": 1763640000, "tokensIn": 1, "tokensOut": 1}
    response = await raw_client.post("/graphql", json={"query": mutation,
                                                       "variables": {"e": [event]}},
                                     headers=auth(ACME_INGEST_TOKEN))
    (error,) = clean(response, 200)["errors"]
    assert "DateTime values are ISO 8601 strings" in error["message"]


# Names the zone database holds that are not places: the host's own zone
# (which would reveal it), POSIX copies, old abbreviations and aliases.
NOT_PLACES = ["localtime", "posixrules", "Factory", "posix/Europe/Berlin", "right/UTC",
              "EST", "GMT", "US/Eastern", "Zulu", "../../etc/passwd"]


@pytest.mark.parametrize("zone", NOT_PLACES)
async def test_only_region_zones_utc_and_etc_are_time_zones(
    raw_client: httpx.AsyncClient, zone: str
) -> None:
    query = f'{{ usage(tz: "{zone}") {{ timeZone }} }}'
    response = await raw_client.post("/graphql", json={"query": query}, headers=auth())
    (error,) = clean(response, 200)["errors"]
    assert (error["extensions"]["code"], error["extensions"]["errors"][0]["type"]) == (
        "BAD_USER_INPUT", "time_zone")
    export = await raw_client.get("/v1/export/usage.csv", params={"tz": zone}, headers=auth())
    assert clean(export, 422)["detail"][0]["loc"] == ["query", "tz"]
    for fine in ("Europe/Berlin", "Etc/GMT+12", "UTC", "America/Argentina/Buenos_Aires"):
        ok = await raw_client.post("/graphql", json={"query": query.replace(zone, fine)},
                                   headers=auth())
        assert ok.json() == {"data": {"usage": {"timeZone": fine}}}
