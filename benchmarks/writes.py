"""Writes at scale: ``meterql load`` by size, and many gateways ingesting into one PostgreSQL.

Run by hand; results in ``benchmarks/results/writes-<backend>.json`` and,
with ``--write-docs``, in ``docs/performance.md``:

- **import**: for each size, a generated tenant (``dataset.py``) loaded into
  a fresh database by ``meterql load`` in a child process (spawn to exit,
  migration included), with its peak RSS;
- **gateways** (PostgreSQL): ``--gateways`` ``meterql serve`` processes, each
  on its own port, over one fresh database holding a 100k-event tenant; for
  ``--seconds``, ``--senders`` concurrent senders per gateway POST batches of
  new events for one account, and every ``--resend``-th send of a sender
  re-sends an earlier batch of any sender (often through another gateway),
  which must count as duplicates.
  Then the database is read directly: every accepted event stored once (its
  key, its row), every rollup summing to the account's events, the
  deadlocks PostgreSQL counted, and, ``STATS_DELAY_S`` later, the rollups'
  live and dead tuples (autovacuum as the server has it: the document says).

    python benchmarks/writes.py --sizes 100000,300000,1000000 --backend sqlite,postgresql \\
        --gateways 4 --senders 8 --seconds 600 --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import live  # noqa: E402
from bench import database, free_port, machine, process, run_import, wait_ready  # noqa: E402
from dataset import BIG, SMALL_EVENTS, write_tenant  # noqa: E402
from report import write_docs  # noqa: E402

RESULTS = HERE / "results"
# Each rollup's sums for one account, written out (cost: whole dollars, then nanos).
ROLLUP_SUMS = {
    table: "SELECT sum(requests) AS requests, sum(tokens_in) AS tokens_in, "
           "sum(tokens_out) AS tokens_out, sum(cost_usd) * 1000000000 + sum(cost_nanos) AS cost "
           "FROM " + table + " WHERE account_id = $1"
    for table in ("usage_days", "usage_instance_days", "usage_model_days",
                  "usage_instance_hours", "usage_instance_model_hours", "usage_quarter_hours",
                  "usage_model_hours")
}
GATEWAY_TENANT = 100_000


def measure_imports(
    backend: str, sizes: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    runs = []
    for events in sizes:
        with tempfile.TemporaryDirectory(prefix="meterql-writes-") as tmp:
            workdir = Path(tmp)
            print(f"[{backend} {events:,}] generating the tenant", flush=True)
            tenant = write_tenant(workdir / "tenant.json", events, args.seed, datetime.now(UTC))
            file_mib = tenant.path.stat().st_size / 2**20
            with database(backend, args.pg_url, workdir) as (url, _naive):
                env = {**os.environ, "METERQL_DATABASE_URL": url}
                print(f"[{backend} {events:,}] meterql load", flush=True)
                imported = run_import(tenant.path, env, workdir)
        total = events + SMALL_EVENTS
        runs.append({"events": total, "seconds": imported["seconds"],
                     "events_per_s": total / imported["seconds"],
                     "peak_rss_mib": imported["peak_rss_mib"], "file_mib": file_mib})
        print(f"  {total / imported['seconds']:,.0f} events/s, "
              f"peak RSS {imported['peak_rss_mib']:.0f} MiB", flush=True)
    return runs


async def _senders(bases: list[str], token: str, seconds: float, senders: int, size: int,
                   resend: int, seed: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    tag = secrets.token_hex(3)
    sent: list[bytes] = []
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    accepted = duplicates = errors = sends = resends = 0
    examples: list[str] = []
    deadline = time.monotonic() + seconds

    async def sender(n: int, base: str, client: httpx.AsyncClient) -> None:
        nonlocal accepted, duplicates, errors, sends, resends
        rng = random.Random(seed * 1_000 + n)
        count = 0
        while time.monotonic() < deadline:
            count += 1
            if resend and sent and count % resend == 0:
                body, resends = rng.choice(sent), resends + 1
            else:
                body = live.batch(rng, f"gw-{tag}-{n}-{count}", size, datetime.now(UTC))
                sent.append(body)
            started = time.perf_counter()
            try:
                response = await client.post(f"{base}/v1/usage/events", content=body,
                                             headers=headers)
            except httpx.HTTPError as error:
                errors += 1
                if len(examples) < 3:
                    examples.append(repr(error))
                continue
            latencies.append(time.perf_counter() - started)
            sends += 1
            statuses[response.status_code] += 1
            if response.status_code == 200:
                answer = response.json()
                accepted += answer["accepted"]
                duplicates += answer["duplicates"]
            elif len(examples) < 3:
                examples.append(f"{response.status_code} {response.text[:200]}")

    limits = httpx.Limits(max_connections=len(bases) * senders)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(
            sender(g * senders + s, base, client)
            for g, base in enumerate(bases) for s in range(senders)
        ))
        elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "prefix": f"gw-{tag}-", "elapsed_s": elapsed, "sends": sends, "resends": resends,
        "accepted": accepted, "duplicates": duplicates, "accepted_per_s": accepted / elapsed,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "status_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "transport_errors": errors, "examples": examples,
        "batch_p50_ms": 1000 * statistics.median(ordered) if ordered else None,
        "batch_p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))] if ordered else None,
    }


async def _check(url: str, prefix: str) -> dict[str, Any]:
    """What the database holds: each accepted event once, every rollup equal to the events."""
    connection = await asyncpg.connect(url)
    try:
        like = prefix.replace("_", r"\_") + "%"
        keys = await connection.fetchval(
            "SELECT count(*) FROM event_keys WHERE account_id = $1 AND event_id LIKE $2",
            BIG, like)
        rows = await connection.fetchval(
            "SELECT count(*) FROM usage_events WHERE account_id = $1 AND event_id LIKE $2",
            BIG, like)
        events = await connection.fetchrow(
            "SELECT count(*) AS requests, sum(tokens_in) AS tokens_in, "
            "sum(tokens_out) AS tokens_out, sum(cost_nanos) AS cost FROM usage_events "
            "WHERE account_id = $1", BIG)
        rollups = {table: dict(await connection.fetchrow(statement, BIG))
                   for table, statement in ROLLUP_SUMS.items()}
        deadlocks = await connection.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    finally:
        await connection.close()
    expected = {k: int(events[k] or 0) for k in ("requests", "tokens_in", "tokens_out", "cost")}
    wrong = {table: {k: int(v or 0) for k, v in sums.items()} for table, sums in rollups.items()
             if {k: int(v or 0) for k, v in sums.items()} != expected}
    return {"keys": keys, "rows": rows, "account_events": expected["requests"],
            "rollups_equal_events": not wrong, "mismatches": wrong, "deadlocks": deadlocks}


def measure_gateways(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meterql-gateways-") as tmp:
        workdir = Path(tmp)
        tenant = write_tenant(workdir / "tenant.json", GATEWAY_TENANT, args.seed,
                              datetime.now(UTC))
        with database("postgresql", args.pg_url, workdir) as (url, naive_url):
            env = {**os.environ, "METERQL_DATABASE_URL": url}
            print("[gateways] meterql load", flush=True)
            run_import(tenant.path, env, workdir)
            deadlocks_before = asyncio.run(_check(naive_url, "none-"))["deadlocks"]
            autovacuum = live.autovacuum_settings(naive_url)
            ports = [free_port() for _ in range(args.gateways)]
            with contextlib.ExitStack() as stack:
                for n, port in enumerate(ports):
                    child = stack.enter_context(process(
                        [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port)],
                        env, workdir / f"gateway-{n}.log"))
                    wait_ready(f"http://127.0.0.1:{port}/readyz", {}, child)
                bases = [f"http://127.0.0.1:{port}" for port in ports]
                print(f"[gateways] {args.gateways} gateways × {args.senders} senders, "
                      f"{args.seconds:g} s", flush=True)
                ingest = asyncio.run(_senders(bases, tenant.ingest_token, args.seconds,
                                              args.senders, args.batch, args.resend, args.seed))
            logs = {p.name: p.read_text().count("Traceback") for p in workdir.glob("gateway-*")}
            check = asyncio.run(_check(naive_url, ingest["prefix"]))
            check["deadlocks"] -= deadlocks_before
            print(f"[gateways] waiting {live.STATS_DELAY_S:g} s for the table statistics",
                  flush=True)
            time.sleep(live.STATS_DELAY_S)
            tables = live.table_stats(naive_url)
            info = machine("postgresql", naive_url)
    exact = (check["keys"] == check["rows"] == ingest["accepted"] and check["rollups_equal_events"])
    return {"gateways": args.gateways, "senders": args.senders, "seconds": args.seconds,
            "batch": args.batch, "resend_every": args.resend, "ingest": ingest,
            "check": {**check, "exact": exact}, "tables": tables, "autovacuum": autovacuum,
            "tracebacks": sum(logs.values()), "machine": info}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000",
                        help="comma-separated tenant sizes to import ('' for none)")
    parser.add_argument("--backend", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get(
        "METERQL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--gateways", type=int, default=4, help="0: no gateway run")
    parser.add_argument("--senders", type=int, default=8, help="per gateway")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--resend", type=int, default=10,
                        help="every Nth send of a sender re-sends an earlier batch (0: never)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true",
                        help="then render docs/performance.md from benchmarks/results/*.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    RESULTS.mkdir(exist_ok=True)
    for backend in args.backend.split(","):
        result: dict[str, Any] = {
            "kind": "writes", "backend": backend, "date": datetime.now(UTC).isoformat(),
            "command": shlex.join(["python", *sys.argv]),
            "imports": measure_imports(backend, sizes, args) if sizes else [],
        }
        if backend == "postgresql" and args.gateways:
            result["live"] = measure_gateways(args)
            live_run = result["live"]
            print(f"  {live_run['ingest']['accepted_per_s']:,.0f} events/s, "
                  f"5xx {live_run['ingest']['status_5xx']}, deadlocks "
                  f"{live_run['check']['deadlocks']}, exact {live_run['check']['exact']}",
                  flush=True)
        if "machine" not in result:
            with tempfile.TemporaryDirectory() as tmp, \
                    database(backend, args.pg_url, Path(tmp)) as (_url, naive_url):
                result["machine"] = machine(backend, naive_url)
        (RESULTS / f"writes-{backend}.json").write_text(json.dumps(result, indent=1))
    if args.write_docs:
        docs, count = write_docs()
        print(f"wrote {docs} from {count} results files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
