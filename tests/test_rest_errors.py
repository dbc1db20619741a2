"""401, 422 and 404 answers of the /v1 routes, byte for byte as FastAPI wrote them."""

from __future__ import annotations

import httpx
import pytest

from meterql.db.engine import Database
from meterql.rest_compat.routes import ROUTES
from tests.golden import ACME_TOKEN, REVOKED_TOKEN, auth, seed

ROUTE_CALLS = [(route.method, route.path) for route in ROUTES]
DAYS_PATHS = ["/v1/metrics/summary", "/v1/metrics/instances", "/v1/metrics/models",
              "/v1/metrics/usage"]


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


NOT_AUTHENTICATED = b'{"detail":"Not authenticated"}'
INVALID = b'{"detail":"Invalid authentication credentials"}'


@pytest.mark.parametrize(("method", "path"), ROUTE_CALLS)
@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, NOT_AUTHENTICATED),
        ({"Authorization": ""}, NOT_AUTHENTICATED),
        ({"Authorization": "Bearer"}, NOT_AUTHENTICATED),
        ({"Authorization": "Bearer "}, NOT_AUTHENTICATED),
        ({"Authorization": f"Basic {ACME_TOKEN}"}, NOT_AUTHENTICATED),
        ({"Authorization": ACME_TOKEN}, NOT_AUTHENTICATED),
        ({"Authorization": "Bearer not-a-token"}, INVALID),
        ({"Authorization": f"Bearer {REVOKED_TOKEN}"}, INVALID),
        ({"Authorization": f"Bearer {ACME_TOKEN}x"}, INVALID),
        ({"Authorization": "Bearer " + "x" * 10_000}, INVALID),
    ],
    ids=["missing", "empty", "scheme-only", "blank-token", "basic", "no-scheme", "unknown",
         "revoked", "near-miss", "huge"],
)
async def test_unauthenticated(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    response = await client.request(method, path, headers=headers, json=[])
    assert response.status_code == 401
    assert response.content == body
    assert response.headers["www-authenticate"] == "Bearer"


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/billing", headers={"Authorization": f"bearer {ACME_TOKEN}"})
    assert response.status_code == 200


async def test_auth_is_checked_before_parameters(client: httpx.AsyncClient) -> None:
    # FastAPI resolved the security dependency first: 401 wins over 422.
    response = await client.get("/v1/metrics/summary?days=abc")
    assert response.status_code == 401


def _ge(value: str, bound: int) -> dict:
    return {"type": "greater_than_equal", "loc": ["query", "days"],
            "msg": f"Input should be greater than or equal to {bound}", "input": value,
            "ctx": {"ge": bound}}


def _le(value: str, bound: int) -> dict:
    return {"type": "less_than_equal", "loc": ["query", "days"],
            "msg": f"Input should be less than or equal to {bound}", "input": value,
            "ctx": {"le": bound}}


def _parsing(value: str) -> dict:
    return {"type": "int_parsing", "loc": ["query", "days"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": value}


@pytest.mark.parametrize("path", DAYS_PATHS)
@pytest.mark.parametrize(
    ("days", "error"),
    [
        ("5", _ge("5", 7)),
        ("6", _ge("6", 7)),
        ("0", _ge("0", 7)),
        ("-1", _ge("-1", 7)),
        ("91", _le("91", 90)),
        ("99999999999999999999", _le("99999999999999999999", 90)),
        ("abc", _parsing("abc")),
        ("", _parsing("")),
        ("7.5", _parsing("7.5")),
        ("1e1", _parsing("1e1")),
        ("٧", _parsing("٧")),  # an Arabic-Indic seven is not a valid integer here
    ],
)
async def test_bad_days_on_metrics_routes(
    client: httpx.AsyncClient, path: str, days: str, error: dict
) -> None:
    response = await client.get(path, params={"days": days}, headers=auth())
    assert response.status_code == 422
    assert response.json() == {"detail": [error]}


@pytest.mark.parametrize(
    ("days", "error"),
    [("0", _ge("0", 1)), ("367", _le("367", 366)), ("x", _parsing("x"))],
)
async def test_bad_days_on_chart(client: httpx.AsyncClient, days: str, error: dict) -> None:
    response = await client.get("/v1/billing/usage/chart", params={"days": days}, headers=auth())
    assert response.status_code == 422
    assert response.json() == {"detail": [error]}


@pytest.mark.parametrize(("path", "edges"), [
    ("/v1/metrics/summary", ("7", "90")),
    ("/v1/billing/usage/chart", ("1", "366")),
])
async def test_range_edges_are_accepted(
    client: httpx.AsyncClient, path: str, edges: tuple[str, str]
) -> None:
    for days in edges:
        response = await client.get(path, params={"days": days}, headers=auth())
        assert response.status_code == 200, days


async def test_422_body_bytes(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/metrics/summary?days=5", headers=auth())
    assert response.content == (
        b'{"detail":[{"type":"greater_than_equal","loc":["query","days"],'
        b'"msg":"Input should be greater than or equal to 7","input":"5","ctx":{"ge":7}}]}'
    )


async def test_days_forms_pydantic_accepts(client: httpx.AsyncClient) -> None:
    # pydantic's lax int parsing, which FastAPI applied: these all mean 8.
    for days in ["8", "+8", " 8 ", "8.0", "08"]:
        body = (await client.get("/v1/metrics/summary", params={"days": days},
                                 headers=auth())).json()
        assert body["period_days"] == 8, days


async def test_last_repeated_parameter_wins_and_unknown_ones_are_ignored(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/metrics/summary?days=5&days=8&color=blue", headers=auth())
    assert response.status_code == 200
    assert response.json()["period_days"] == 8


async def test_unknown_path_is_fastapi_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nope", headers=auth())
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/metrics/summary", headers=auth())
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
