"""Two revisions side by side, in-process: what a change costs the page queries and ingest.

    python benchmarks/revisions.py --base REV [--backend sqlite,postgresql] [--rounds 3]
        [--events N]

The base revision is checked out into a temporary git worktree; the working
tree is the head. For each backend, each revision runs in a process of its
own (its own code on ``PYTHONPATH``) on a fresh database of the demo data
made at a fixed instant: the page queries of ``src/meterql/queries/`` (the
revision's own documents, defaults) and batches of 1 and of 100 events over
``POST /v1/usage/events``, ``--requests`` each, medians after a warm-up: to
the demo account (``ingest``; whatever budgets the revision's demo makes) and
to an account with nothing but usage (``plain``). With ``--events N``,
the database holds the benchmark tenant of ``benchmarks/dataset.py`` instead
(N events over 90 days, 50 instances, 20 models), written once and loaded
by each process with ``meterql load``, and the ``/v1`` GET routes are timed
too (``ingest`` is then the tenant's account, without budgets).
Rounds alternate base, head, base, head... so that the machine's drift falls
on both; the figure quoted is the median of a revision's round medians, and
the ratio is head over base. Nothing here is a pass/fail test: the numbers
go to ``benchmarks/analysis.md`` by hand, with this command.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


# The /v1 GET routes timed on a tenant (``--events``).
ROUTES = (
    "/v1/metrics/summary?days=90", "/v1/metrics/instances?days=90",
    "/v1/metrics/models?days=90", "/v1/metrics/usage?days=90", "/v1/billing",
    "/v1/billing/trial-status", "/v1/billing/usage", "/v1/billing/usage/chart?days=30",
)


async def _child(
    backend: str, requests: int, pg_admin: str, tenant: list[str] | None = None
) -> dict[str, float]:
    """Run in the revision's own process: its code, a fresh database, its measures.

    ``tenant``: the file to load, its read token and its ingest token.
    """
    import httpx

    from meterql import demo, importer
    from meterql.app import create_app
    from meterql.config import Settings
    from meterql.db.engine import Database
    from meterql.db.migrate import upgrade
    from meterql.queries import page_query

    drop = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/revision.db"
    else:
        import asyncpg

        name = f"bench_rev_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(pg_admin)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        url, drop = f"{url}/{name}", name
    settings = Settings(database_url=url, webhook_delivery=False)
    db = Database.from_settings(settings)
    try:
        await upgrade(db.engine)
        if tenant is None:
            await demo.fill(db, now=NOW)
            token = await demo.read_token(db)
        else:
            await importer.load(db, Path(tenant[0]), now=NOW)
            token = tenant[1]
        async with db.write() as session, session.begin():
            from meterql.db import writes

            ingest = (await writes.create_token(session, demo.DEMO_ACCOUNT, ["ingest"])
                      if tenant is None else tenant[2])
            # An account with nothing but usage (no budget, whatever the revision).
            await writes.ensure_accounts(session, ["plain"])
            plain = await writes.create_token(session, "plain", ["ingest"])
        app = create_app(settings, database=db, clock=lambda: NOW)
        found: dict[str, float] = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for route in ROUTES if tenant is not None else ():
                found[route] = await _median(requests, lambda route=route: client.get(
                    route, headers={"Authorization": f"Bearer {token}"}))
            for page in ("billing-page", "metrics-page"):
                body = {"query": page_query(page)}
                found[page] = await _median(requests, lambda body=body: client.post(
                    "/graphql", json=body, headers={"Authorization": f"Bearer {token}"}))
            numbers = itertools.count()
            for label, size, sender in (("ingest 1", 1, ingest), ("ingest 100", 100, ingest),
                                        ("plain 1", 1, plain), ("plain 100", 100, plain)):

                def batch(size: int = size, sender: str = sender) -> Any:
                    n = next(numbers)
                    events = [{"event_id": f"rev-{size}-{n}-{k}", "instance_id": "inst-bench",
                               "model": "gpt-4o", "timestamp": "2026-11-20T15:00:00Z",
                               "tokens_in": 10, "tokens_out": 5} for k in range(size)]
                    return client.post("/v1/usage/events", json=events,
                                       headers={"Authorization": f"Bearer {sender}"})

                found[label] = await _median(requests, batch)
        return found
    finally:
        await db.dispose()
        if drop is not None:
            import asyncpg

            admin = await asyncpg.connect(pg_admin)
            await admin.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
            await admin.close()


async def _median(requests: int, call: Any, warmup: int = 10) -> float:
    times = []
    for n in range(warmup + requests):
        started = time.perf_counter()
        response = await call()
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or "errors" in response.json():
            raise SystemExit(f"request failed: {response.status_code} {response.text[:300]}")
        if n >= warmup:
            times.append(elapsed * 1000)
    return statistics.median(times)


def _run(
    tree: Path, backend: str, requests: int, pg_admin: str, tenant: list[str] | None
) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "--backend", backend,
         "--requests", str(requests), "--pg-admin", pg_admin,
         *(["--tenant", *tenant] if tenant else [])],
        env=env, cwd=tree, check=False, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{tree} on {backend} failed:\n{done.stderr[-3000:]}")
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the revision to compare the working tree with")
    parser.add_argument("--backend", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    parser.add_argument("--events", type=int, default=0,
                        help="load the benchmark tenant of this many events instead of the "
                        "demo data, and time the /v1 routes too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tenant", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(
            _child(args.backend, args.requests, args.pg_admin, args.tenant))))
        return 0
    if not args.base:
        parser.error("--base is required")
    with tempfile.TemporaryDirectory() as scratch:
        tenant = None
        if args.events:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from dataset import write_tenant

            made = write_tenant(Path(scratch) / "tenant.json", args.events, 7, NOW)
            tenant = [str(made.path), made.read_token, made.ingest_token]
        base = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base],
                       cwd=ROOT, check=True)
        try:
            for backend in args.backend.split(","):
                rounds: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
                for _ in range(args.rounds):
                    for name, tree in (("base", base), ("head", ROOT)):
                        rounds[name].append(
                            _run(tree, backend, args.requests, args.pg_admin, tenant))
                print(f"{backend} (medians of {args.rounds} rounds of {args.requests} "
                      "requests, ms)")
                for measure in rounds["base"][0]:
                    old = statistics.median(r[measure] for r in rounds["base"])
                    new = statistics.median(r[measure] for r in rounds["head"])
                    print(f"  {measure:32} base {old:7.2f}   head {new:7.2f}   "
                          f"head/base {new / old:.2f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
