"""Golden bodies of the /v1/metrics routes, worked out by hand (see golden.py)."""

from __future__ import annotations

import httpx
import pytest

from meterql.db.engine import Database
from tests.golden import auth, seed


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


ZERO = "0.0000"

SUMMARY = {
    # e1 e2 e3 e4 e8; cost 0.0075+0.0009+0.002+0+0.00005 = 0.01045 → half-up 0.0105
    7: {"active_instances": 2, "estimated_cost_usd": "0.0105", "period_days": 7,
        "total_requests": 5, "total_tokens": 5620, "total_tokens_in": 3720,
        "total_tokens_out": 1900, "unique_models": 3},
    # + e5 (one second before the 7-day window): 0.01045 + 0.125 = 0.13545 → 0.1355
    8: {"active_instances": 2, "estimated_cost_usd": "0.1355", "period_days": 8,
        "total_requests": 6, "total_tokens": 25620, "total_tokens_in": 13720,
        "total_tokens_out": 11900, "unique_models": 3},
    30: {"active_instances": 2, "estimated_cost_usd": "0.1355", "period_days": 30,
         "total_requests": 6, "total_tokens": 25620, "total_tokens_in": 13720,
         "total_tokens_out": 11900, "unique_models": 3},
    # + e6 (reported cost 1.23456789): 1.37001789 → 1.3700
    90: {"active_instances": 2, "estimated_cost_usd": "1.3700", "period_days": 90,
         "total_requests": 7, "total_tokens": 2025620, "total_tokens_in": 1013720,
         "total_tokens_out": 1011900, "unique_models": 3},
}


@pytest.mark.parametrize("days", sorted(SUMMARY))
async def test_summary(client: httpx.AsyncClient, days: int) -> None:
    response = await client.get(f"/v1/metrics/summary?days={days}", headers=auth())
    assert response.status_code == 200
    assert response.json() == SUMMARY[days]


async def test_summary_default_is_30_days(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/metrics/summary", headers=auth())
    assert response.json() == SUMMARY[30]


async def test_summary_bytes_match_fastapi_rendering(client: httpx.AsyncClient) -> None:
    # Compact separators, keys in the seeds' order, money as 4-place strings.
    response = await client.get("/v1/metrics/summary?days=7", headers=auth())
    assert response.headers["content-type"] == "application/json"
    assert response.content == (
        b'{"active_instances":2,"estimated_cost_usd":"0.0105","period_days":7,'
        b'"total_requests":5,"total_tokens":5620,"total_tokens_in":3720,'
        b'"total_tokens_out":1900,"unique_models":3}'
    )


def _instance(iid: str, host: str, status: str, requests: int, tokens: int, cost: str) -> dict:
    return {"estimated_cost_usd": cost, "hostname": host, "instance_id": iid,
            "request_count": requests, "status": status, "total_tokens": tokens}


IDLE = [
    # Idle instances close the list, in instance-id order (registered z before c).
    _instance("inst-c", "agent-c.acme.test", "error", 0, 0, ZERO),
    _instance("inst-z", "agent-z.acme.test", "running", 0, 0, ZERO),
]
INSTANCES = {
    # inst-a: e1 e2 e8 = 0.00845 → 0.0085; inst-b: e3 e4 = 0.002
    7: [_instance("inst-a", "agent-a.acme.test", "running", 3, 4520, "0.0085"),
        _instance("inst-b", "agent-b.acme.test", "stopped", 2, 1100, "0.0020"), *IDLE],
    # inst-a gains e5 (20000 tokens, 0.125) and at 90 days e6 (2000000, 1.23456789)
    30: [_instance("inst-a", "agent-a.acme.test", "running", 4, 24520, "0.1335"),
         _instance("inst-b", "agent-b.acme.test", "stopped", 2, 1100, "0.0020"), *IDLE],
    90: [_instance("inst-a", "agent-a.acme.test", "running", 5, 2024520, "1.3680"),
         _instance("inst-b", "agent-b.acme.test", "stopped", 2, 1100, "0.0020"), *IDLE],
}


@pytest.mark.parametrize("days", sorted(INSTANCES))
async def test_instances(client: httpx.AsyncClient, days: int) -> None:
    response = await client.get(f"/v1/metrics/instances?days={days}", headers=auth())
    assert response.status_code == 200
    assert response.json() == {"instances": INSTANCES[days], "total_count": 4}


def _model(model: str, provider: str, requests: int, tin: int, tout: int, cost: str,
           pct: float) -> dict:
    return {"estimated_cost_usd": cost, "model": model, "pct_of_total": pct,
            "provider": provider, "request_count": requests, "tokens_in": tin,
            "tokens_out": tout}


MODELS = {
    # gpt-4o: e1 e3 e8 = 0.00955 → 0.0096; ties at 1 request by model name
    7: {"models": [_model("gpt-4o", "openai", 3, 1420, 600, "0.0096", 60.0),
                   _model("gpt-4o-mini", "openai", 1, 2000, 1000, "0.0009", 20.0),
                   _model("mystery", "", 1, 300, 300, ZERO, 20.0)],
        "total_requests": 5},
    # + e5: 4 of 6 requests = 66.666… → 66.67; 1 of 6 → 16.67
    8: {"models": [_model("gpt-4o", "openai", 4, 11420, 10600, "0.1346", 66.67),
                   _model("gpt-4o-mini", "openai", 1, 2000, 1000, "0.0009", 16.67),
                   _model("mystery", "", 1, 300, 300, ZERO, 16.67)],
        "total_requests": 6},
    # + e6: gpt-4o 4/7 = 57.142… → 57.14; mini 2/7 = 28.571… → 28.57; 1/7 → 14.29
    90: {"models": [_model("gpt-4o", "openai", 4, 11420, 10600, "0.1346", 57.14),
                    _model("gpt-4o-mini", "openai", 2, 1002000, 1001000, "1.2355", 28.57),
                    _model("mystery", "", 1, 300, 300, ZERO, 14.29)],
         "total_requests": 7},
}


@pytest.mark.parametrize("days", sorted(MODELS))
async def test_models(client: httpx.AsyncClient, days: int) -> None:
    response = await client.get(f"/v1/metrics/models?days={days}", headers=auth())
    assert response.status_code == 200
    assert response.json() == MODELS[days]


def _point(date: str, requests: int, tin: int, tout: int, cost: str) -> dict:
    return {"date": date, "estimated_cost_usd": cost, "requests": requests,
            "tokens_in": tin, "tokens_out": tout}


async def test_usage_seven_days_zero_filled(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/metrics/usage?days=7", headers=auth())
    assert response.status_code == 200
    assert response.json() == {
        "period_days": 7,
        "points": [
            _point("2026-11-14", 1, 300, 300, ZERO),  # e4 at 00:00:00 counts
            _point("2026-11-15", 0, 0, 0, ZERO),
            _point("2026-11-16", 0, 0, 0, ZERO),
            _point("2026-11-17", 0, 0, 0, ZERO),
            _point("2026-11-18", 1, 400, 100, "0.0020"),
            _point("2026-11-19", 1, 20, 0, "0.0001"),  # 0.00005 half-up
            _point("2026-11-20", 2, 3000, 1500, "0.0084"),
        ],
    }


@pytest.mark.parametrize("days", [7, 8, 30, 90])
async def test_usage_has_one_point_per_day_oldest_first(
    client: httpx.AsyncClient, days: int
) -> None:
    body = (await client.get(f"/v1/metrics/usage?days={days}", headers=auth())).json()
    dates = [p["date"] for p in body["points"]]
    assert body["period_days"] == days
    assert len(dates) == days and dates == sorted(dates) and len(set(dates)) == days
    assert dates[-1] == "2026-11-20"
    assert sum(p["requests"] for p in body["points"]) == SUMMARY[
        days if days in SUMMARY else 30
    ]["total_requests"]


async def test_other_tenant_sees_only_its_own(client: httpx.AsyncClient) -> None:
    from tests.golden import GLOBEX_TOKEN

    summary = (await client.get("/v1/metrics/summary?days=7", headers=auth(GLOBEX_TOKEN))).json()
    # globex: e1 999/999 on 11-20 (0.0124875) and g2 77/77 on 11-15 (0.0000577)
    assert summary == {"active_instances": 1, "estimated_cost_usd": "0.0125", "period_days": 7,
                       "total_requests": 2, "total_tokens": 2152, "total_tokens_in": 1076,
                       "total_tokens_out": 1076, "unique_models": 2}
    instances = (await client.get("/v1/metrics/instances", headers=auth(GLOBEX_TOKEN))).json()
    assert [i["instance_id"] for i in instances["instances"]] == ["inst-g"]
