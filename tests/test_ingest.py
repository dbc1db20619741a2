from __future__ import annotations

import time

import httpx

from meterql.db.engine import Database
from tests.golden import ACME_INGEST_TOKEN, auth, seed


def ev(i, **kw):
    d = {"event_id": f"x{i}", "instance_id": "inst-a", "model": "gpt-4o",
         "timestamp": "2026-11-20T10:00:00Z", "tokens_in": 1, "tokens_out": 1}
    d.update(kw)
    return d


async def test_explore(app, db: Database) -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url='http://t')
    await seed(db)
    h = auth(ACME_INGEST_TOKEN)
    out = []
    async def p(*a, **k):
        r = await client.post(*a, **k)
        out.append((a, r.status_code, r.text[:400]))
    await p("/v1/usage/events", content=b'[{"event_id":"a","instance_id":"inst-a","model":"m","timestamp":"2026-11-20T10:00:00Z","tokens_in":NaN,"tokens_out":1,"cost_usd":Infinity}]', headers=h)
    await p("/v1/usage/events", content=b"[" * 100000 + b"]" * 100000, headers=h)
    await p("/v1/usage/events", json=[ev(1, timestamp="0001-01-01T00:30:00+01:00")], headers=h)
    await p("/v1/usage/events", json=[ev(1, timestamp="9999-12-31T23:30:00-01:00")], headers=h)
    await p("/v1/usage/events", content=b"\xff\xfe", headers=h)
    await p("/v1/usage/events", content=b"x" * 100, headers={**h, "content-length": "20000000"})
    await p("/v1/usage/events", content=b"[" + b" " * (11 * 1024 * 1024) + b"]", headers={**h, "content-length": "10"})
    async def gen():
        for _ in range(11):
            yield b" " * (1024 * 1024)
        yield b"[]"
    await p("/v1/usage/events", content=gen(), headers=h)
    t = time.time()
    await p("/v1/usage/events", json=[ev(i) for i in range(10000)], headers=h)
    out.append(time.time() - t)
    t = time.time()
    await p("/v1/usage/events", json=[ev(i) for i in range(10001)], headers=h)
    out.append(time.time() - t)
    for x in out:
        print(x)
    assert 0
