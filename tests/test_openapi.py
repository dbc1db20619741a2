"""/v1/openapi.json: valid OpenAPI 3.1, made from the route table, true to the answers."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from meterql.db.engine import Database
from meterql.rest_compat.routes import ROUTES
from meterql.windows import CHART_DAYS, METRICS_DAYS
from tests.golden import ACME_INGEST_TOKEN, auth, seed


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/openapi.json")  # no token: the reference is public
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def check(document: dict[str, Any], schema: dict[str, Any], instance: object) -> None:
    """Validate ``instance`` against a schema of the document, its $refs resolved."""
    jsonschema.validate(
        instance, {**schema, "components": document["components"]},
        cls=jsonschema.Draft202012Validator,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def response_schema(document: dict[str, Any], path: str, method: str, status: int) -> Any:
    response = document["paths"][path][method]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]


EXPORT = "/v1/export/usage.csv"


async def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_route_is_documented(document: dict[str, Any]) -> None:
    assert sorted(
        (path, method) for path, item in document["paths"].items() for method in item
    ) == sorted((route.path, route.method.lower()) for route in ROUTES)
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation.get("security", document["security"]) == [{"bearer": []}]
        assert operation["x-required-scope"] == route.scope
        # The fixed document travels with its route, for the docs page.
        assert operation["x-graphql-document"].lstrip().startswith(("query", "mutation"))
        assert "body:" in operation["x-graphql-document"]
        # …and in the description as a fenced block, which /v1/docs (Swagger UI) shows.
        fenced = f"```graphql\n{operation['x-graphql-document']}\n```"
        assert operation["description"].endswith(fenced)
    # Sections of the docs page: the path's first word under /v1.
    assert {
        path: item[method]["tags"] for path, item in document["paths"].items() for method in item
    } == {route.path: [route.path.split("/")[2]] for route in ROUTES}
    assert {tag for route in ROUTES for tag in [route.path.split("/")[2]]} == {
        "metrics", "billing", "usage", "export"}
    # The docs page is HTML for people, not an operation of the compat API.
    assert "/v1/docs" not in document["paths"]
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }


@pytest.mark.parametrize(
    ("path", "days"),
    [("/v1/metrics/summary", METRICS_DAYS), ("/v1/metrics/instances", METRICS_DAYS),
     ("/v1/metrics/models", METRICS_DAYS), ("/v1/metrics/usage", METRICS_DAYS),
     ("/v1/billing/usage/chart", CHART_DAYS)],
)
async def test_days_carries_its_range_and_default(
    document: dict[str, Any], path: str, days: Any
) -> None:
    (param,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "days"]
    assert param["in"] == "query" and param["required"] is False
    assert param["schema"] == {"type": "integer", "minimum": days.minimum,
                               "maximum": days.maximum, "default": days.default}


@pytest.mark.parametrize(
    "url",
    ["/v1/metrics/summary?days=7", "/v1/metrics/instances", "/v1/metrics/models?days=90",
     "/v1/metrics/usage?days=7", "/v1/billing", "/v1/billing/trial-status",
     "/v1/billing/usage", "/v1/billing/usage/chart?days=3",
     "/v1/billing/usage/chart?days=3&instance_id=inst-a"],
)
async def test_real_answers_match_their_response_schema(
    client: httpx.AsyncClient, document: dict[str, Any], url: str
) -> None:
    response = await client.get(url, headers=auth())
    assert response.status_code == 200
    check(document, response_schema(document, url.split("?")[0], "get", 200), response.json())


async def test_the_schemas_are_strict_enough_to_fail(document: dict[str, Any]) -> None:
    """A float where money goes, a missing key or an extra one: each is refused."""
    schema = response_schema(document, "/v1/metrics/summary", "get", 200)
    good = {"active_instances": 1, "estimated_cost_usd": "1.0000", "period_days": 7,
            "total_requests": 1, "total_tokens": 2, "total_tokens_in": 1,
            "total_tokens_out": 1, "unique_models": 1}
    check(document, schema, good)
    for bad in ({**good, "estimated_cost_usd": 1.0}, {**good, "estimated_cost_usd": "1.0"},
                {k: v for k, v in good.items() if k != "period_days"}, {**good, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            check(document, schema, bad)


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        ("GET", "/v1/billing", {}, 401),
        ("GET", "/v1/metrics/summary?days=5", {"headers": auth()}, 422),
        ("GET", "/v1/billing/usage/chart?instance_id=nope", {"headers": auth()}, 404),
        ("POST", "/v1/usage/events", {"headers": auth(ACME_INGEST_TOKEN), "json": [{}]}, 422),
        ("GET", "/v1/billing", {"headers": auth(ACME_INGEST_TOKEN + "x")}, 401),
        ("GET", f"{EXPORT}?granularity=minute&tz=Nowhere/Else", {"headers": auth()}, 422),
        ("GET", f"{EXPORT}?from=2026-11-02", {"headers": auth()}, 422),
        ("GET", EXPORT, {"headers": auth(ACME_INGEST_TOKEN + "x")}, 401),
    ],
)
async def test_error_answers_match_their_documented_shapes(
    client: httpx.AsyncClient, document: dict[str, Any], method: str, url: str,
    kwargs: dict[str, Any], status: int,
) -> None:
    response = await client.request(method, url, **kwargs)
    assert response.status_code == status
    path = url.split("?")[0]
    check(document, response_schema(document, path, method.lower(), status), response.json())


async def test_the_ingest_body_schema_is_the_validation(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/usage/events"]["post"]["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    event = {"event_id": "e", "instance_id": "i", "model": "m",
             "timestamp": "2026-11-20T12:00:00Z", "tokens_in": 1, "tokens_out": 2}
    check(document, schema, [event, {**event, "cost_usd": "0.5", "end_user_id": None}])
    assert schema["maxItems"] == 10_000
    for bad in ([{**event, "tokens_in": -1}], [{**event, "surprise": 1}],
                [{k: v for k, v in event.items() if k != "model"}], {"events": []}):
        with pytest.raises(jsonschema.ValidationError):
            check(document, schema, bad)
    responses = document["paths"]["/v1/usage/events"]["post"]["responses"]
    assert {"200", "401", "403", "413", "422", "503"} <= set(responses)


async def test_the_csv_export_is_documented_as_csv(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    operation = document["paths"][EXPORT]["get"]
    ok = operation["responses"]["200"]
    assert ok["content"] == {"text/csv": {"schema": {"type": "string"}}}
    assert "Content-Disposition" in ok["headers"]
    assert {"401", "403", "422", "503"} <= set(operation["responses"])
    assert operation["tags"] == ["export"] and operation["x-required-scope"] == "read"
    # Both operations of its document, in the description as for every route.
    shown = operation["x-graphql-document"]
    assert "query ExportUsageGroups(" in shown and "query ExportUsage(" in shown
    params = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert params["from"] == params["to"] == {"type": "string", "format": "date"}
    assert params["granularity"] == {"type": "string", "enum": ["hour", "day", "week", "month"],
                                     "default": "day"}
    assert params["group_by"] == {"type": "string", "enum": ["model", "instance", "provider"]}
    assert params["tz"]["default"] == "UTC"
    assert {"UTC", "Europe/Berlin", "Asia/Kolkata"} <= set(params["tz"]["enum"])
    # The real answer is what the document says: CSV text, as an attachment.
    response = await client.get(f"{EXPORT}?granularity=week&group_by=model", headers=auth())
    assert response.status_code == 200
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in ok["content"]
    check(document, ok["content"][media_type]["schema"], response.text)
    assert response.headers["content-disposition"].startswith("attachment; filename=")
