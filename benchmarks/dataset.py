"""A deterministic benchmark tenant, written as a ``meterql load`` file, streamed.

The file is written one event at a time so that generating 1M events costs no
more memory than generating 100k: the benchmark measures meterql's memory, not
its own.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO

BIG = "bench-big"
SMALL = "bench-small"
INSTANCES = 50
MODELS = 20
END_USERS = 20_000
SMALL_EVENTS = 500
SPAN = timedelta(days=90)
PRICE_CENTS = 4900
TOKEN_ALLOWANCE = 5_000_000_000


@dataclass(frozen=True)
class Tenant:
    """What the benchmark needs to know about the file it wrote."""

    path: Path
    events: int
    now: datetime
    read_token: str
    ingest_token: str
    period_start: datetime
    period_end: datetime
    # The harness's own reference data, for checking answers without
    # reading meterql's tables: model → (provider, input and output cents
    # per Mtok), instance → (hostname, status) of the big tenant.
    models: dict[str, tuple[str, int, int]]
    instances: dict[str, tuple[str, str]]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _models(rng: random.Random) -> list[dict[str, str]]:
    """20 priced models; prices are whole cents per Mtok so every cost is exact."""
    return [
        {
            "model": f"model-{k:02d}",
            "provider": ("openai", "anthropic", "google", "mistral")[k % 4],
            "input_usd_per_mtok": str(Decimal(rng.randint(5, 500)).scaleb(-2)),
            "output_usd_per_mtok": str(Decimal(rng.randint(20, 2000)).scaleb(-2)),
        }
        for k in range(MODELS)
    ]


def _instances(account_id: str, count: int) -> list[dict[str, str]]:
    return [
        {"instance_id": f"inst-{k:02d}", "hostname": f"agent-{k}.{account_id}.test",
         "status": "running" if k % 5 else "stopped"}
        for k in range(count)
    ]


def _account(account_id: str, instances: int, tokens: list[dict[str, object]],
             period: tuple[datetime, datetime]) -> dict[str, object]:
    return {
        "account_id": account_id,
        "tokens": tokens,
        "instances": _instances(account_id, instances),
        "subscriptions": [{
            "tier_id": "tier-pro", "status": "trialing",
            "current_period_start": _iso(period[0]), "current_period_end": _iso(period[1]),
            "trial_ends_at": _iso(period[1]),
        }],
        "webhost_nodes": [{"node_id": f"node-{k}", "hosted_sites": 3 + k} for k in range(4)],
    }


def _write_events(out: IO[str], rng: random.Random, account_id: str, count: int,
                  instances: int, now: datetime, first: bool) -> None:
    """Events in time order over the 90 days before ``now``, one line each."""
    step = SPAN / count
    start = now - SPAN
    for n in range(count):
        moment = start + step * (n + rng.random())
        event = {
            "account_id": account_id,
            "event_id": f"{account_id}-{n:09d}",
            "instance_id": f"inst-{rng.randrange(instances):02d}",
            "model": f"model-{rng.randrange(MODELS):02d}",
            "timestamp": _iso(moment.replace(microsecond=moment.microsecond // 1000 * 1000)),
            "tokens_in": rng.randint(50, 8_000),
            "tokens_out": rng.randint(10, 2_000),
            "end_user_id": f"user-{rng.randrange(END_USERS):05d}",
            "conversation_id": f"conv-{rng.randrange(count // 4 + 1):07d}",
        }
        out.write(("\n" if first and n == 0 else ",\n") + json.dumps(event))


def write_tenant(path: Path, events: int, seed: int, now: datetime) -> Tenant:
    """Write the big tenant (``events`` events) and a small second one to ``path``."""
    rng = random.Random(seed)
    now = now.astimezone(UTC).replace(second=0, microsecond=0)
    period = (now - timedelta(days=15), now + timedelta(days=15))
    read_token = f"bench-read-{seed:08d}"
    ingest_token = f"bench-ingest-{seed:08d}"
    models = _models(rng)
    head = {
        "models": models,
        "tiers": [{
            "tier_id": "tier-pro", "tier_slug": "pro", "product_name": "Agents",
            "plan_name": "Pro", "price_cents": PRICE_CENTS, "billing_cycle": "monthly",
            "api_call_limit": 5_000_000, "conversation_limit": 500_000, "instance_limit": 100,
            "max_sites_per_node": 25, "token_allowance": TOKEN_ALLOWANCE,
        }],
        "accounts": [
            _account(BIG, INSTANCES, [{"token": read_token, "scopes": ["read"]},
                                      {"token": ingest_token, "scopes": ["ingest"]}], period),
            _account(SMALL, 2, [{"token": f"bench-small-{seed:08d}"}], period),
        ],
    }
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(head)[:-1] + ',\n"usage_events": [')
        _write_events(out, rng, BIG, events, INSTANCES, now, first=True)
        _write_events(out, rng, SMALL, SMALL_EVENTS, 2, now, first=False)
        out.write("\n]}\n")
    prices = {m["model"]: (m["provider"], _cents(m["input_usd_per_mtok"]),
                           _cents(m["output_usd_per_mtok"])) for m in models}
    instances = {i["instance_id"]: (i["hostname"], i["status"])
                 for i in _instances(BIG, INSTANCES)}
    return Tenant(path, events, now, read_token, ingest_token, *period, prices, instances)


def _cents(usd: str) -> int:
    cents = Decimal(usd).scaleb(2)
    assert cents == cents.to_integral_value(), usd
    return int(cents)
