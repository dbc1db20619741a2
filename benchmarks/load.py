"""Load test of meterql: concurrent clients mixing reads and live ingest, then a count.

Run by hand, never as a timed unit test. A tenant is generated
(``dataset.write_tenant``) and imported with ``meterql load``, ``meterql
serve`` is started on a free port, and ``--clients`` asyncio clients then
loop for ``--seconds``, each request drawn from a fixed mix: the eight
``/v1`` reads (the chart also for one instance), two GraphQL queries, and
``POST /v1/usage/events`` batches of new events or re-sent earlier batches
(which must count as duplicates, also while the first send is in flight).

Afterwards the database is read directly: every event accepted (the sum of
``accepted`` over all ingest answers) must be stored exactly once, the
account's events must be the imported ones plus those, and every rollup
must sum to the account's events. Any 5xx, other failed answer, transport
error or mismatch fails the run (exit 1).

    python benchmarks/load.py --backend sqlite --clients 64 --seconds 60 --write-docs
    python benchmarks/load.py --backend postgresql --clients 64 --seconds 60 --write-docs

A short smoke run: ``--clients 4 --seconds 5 --events 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from bench import (
    ROUTES,
    database,
    free_port,
    graphql_request,
    machine,
    process,
    run_import,
    server_env,
    wait_ready,
)
from dataset import BIG, INSTANCES, MODELS, Tenant, write_tenant
from exact import DAYS
from report import write_docs

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCH = 100
# Answers of one kind kept verbatim when they fail, for the report.
KEPT_FAILURES = 5
ROLLUPS = ("usage_days", "usage_instance_days", "usage_model_days", "usage_instance_hours")


@dataclass
class Kind:
    """One kind of request in the mix, and what its answers were."""

    name: str
    weight: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    transport_errors: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, detail: dict[str, Any]) -> None:
        self.failures += 1
        if len(self.examples) < KEPT_FAILURES:
            self.examples.append(detail)


@dataclass
class Ingest:
    """Every batch sent so far and what the server said it accepted of it."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    batches: list[bytes] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    answered: list[bool] = field(default_factory=list)
    duplicates: int = 0
    sends: int = 0

    @property
    def prefix(self) -> str:
        return f"load-{self.tag}-"

    def new_batch(self, rng: random.Random) -> int:
        """A batch of ``BATCH`` events never sent before, stamped in the last hour.

        The last hour keeps the events inside the current billing period and
        the ``days`` windows, so the reads running beside them see them.
        """
        number = len(self.batches)
        stamp = datetime.now(UTC) - timedelta(seconds=rng.randint(1, 3600))
        events = [
            {"event_id": f"{self.prefix}{number:06d}-{n:03d}",
             "instance_id": f"inst-{rng.randrange(INSTANCES):02d}",
             "model": f"model-{rng.randrange(MODELS):02d}",
             "timestamp": stamp.isoformat().replace("+00:00", "Z"),
             "tokens_in": rng.randint(50, 8_000), "tokens_out": rng.randint(10, 2_000),
             "end_user_id": f"load-user-{rng.randrange(5_000):04d}"}
            for n in range(BATCH)]
        self.batches.append(json.dumps(events).encode())
        self.accepted.append(0)
        self.answered.append(False)
        return number


@dataclass
class Load:
    """Shared by all clients: the mix, its deadline, and the ingest ledger."""

    tenant: Tenant
    deadline: float
    kinds: dict[str, Kind]
    ingest: Ingest = field(default_factory=Ingest)


# Reads: (kind, path). The chart is asked for the account and for one instance.
READS = [(f"GET {route.split('?')[0]}", route) for route, *_ in ROUTES] + [
    ("GET /v1/billing/usage/chart?instance_id", f"/v1/billing/usage/chart?days={DAYS}"
                                                "&instance_id=inst-07")]
GRAPHQL = {"POST /graphql metricsSummary": ("metrics_summary", {"days": DAYS}),
           "POST /graphql billingUsage": ("billing_usage", {})}
NEW, RESENT = "POST /v1/usage/events (new)", "POST /v1/usage/events (re-sent)"
# Weights out of 100: about 70 % reads and 30 % ingest requests.
MIX = {**dict.fromkeys((name for name, _ in READS), 6),
       **dict.fromkeys(GRAPHQL, 8), NEW: 22, RESENT: 8}


async def send(kind: Kind,
               request: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response | None:
    """One timed request; the answer, or None after a transport error (recorded)."""
    started = time.perf_counter()
    try:
        response = await request()
    except httpx.HTTPError as error:
        kind.transport_errors += 1
        kind.fail({"error": repr(error)})
        return None
    kind.latencies_ms.append((time.perf_counter() - started) * 1000)
    kind.statuses[response.status_code] += 1
    return response


def _answer(response: httpx.Response) -> dict[str, Any]:
    return {"status": response.status_code, "body": response.text[:2000]}


async def read(load: Load, client: httpx.AsyncClient, kind: Kind, path: str) -> None:
    response = await send(kind, lambda: client.get(
        path, headers={"Authorization": f"Bearer {load.tenant.read_token}"}))
    if response is not None and response.status_code != 200:
        kind.fail(_answer(response))


async def query(load: Load, client: httpx.AsyncClient, kind: Kind, document: str,
                variables: dict[str, int]) -> None:
    body = graphql_request(document, variables)
    response = await send(kind, lambda: client.post(
        "/graphql", json=body, headers={"Authorization": f"Bearer {load.tenant.read_token}"}))
    # GraphQL answers 200 with "errors" for a failed field: that is a failure too.
    if response is not None and (response.status_code != 200 or b'"errors"' in response.content):
        kind.fail(_answer(response))


async def ingest(load: Load, client: httpx.AsyncClient, kind: Kind, number: int) -> None:
    """Send batch ``number``; every answer must account for the whole batch."""
    ledger = load.ingest
    ledger.sends += 1
    response = await send(kind, lambda: client.post(
        "/v1/usage/events", content=ledger.batches[number],
        headers={"Authorization": f"Bearer {load.tenant.ingest_token}",
                 "Content-Type": "application/json"}))
    if response is None:
        return
    if response.status_code != 200:
        kind.fail(_answer(response))
        return
    answer = response.json()
    ledger.accepted[number] += answer["accepted"]
    ledger.duplicates += answer["duplicates"]
    ledger.answered[number] = True
    if answer["accepted"] + answer["duplicates"] != BATCH:
        kind.fail({**_answer(response), "batch": number, "why": "accepted + duplicates != batch"})


async def client_loop(load: Load, client: httpx.AsyncClient, seed: int) -> None:
    """Draw from the mix until the deadline; the request in flight then completes."""
    rng = random.Random(seed)
    names, weights = list(MIX), list(MIX.values())
    reads, ledger = dict(READS), load.ingest
    while time.monotonic() < load.deadline:
        name = rng.choices(names, weights)[0]
        kind = load.kinds[name]
        if name in reads:
            await read(load, client, kind, reads[name])
        elif name in GRAPHQL:
            await query(load, client, kind, *GRAPHQL[name])
        elif name == RESENT and ledger.batches:
            # Any batch sent so far, answered or still in flight elsewhere.
            await ingest(load, client, kind, rng.randrange(len(ledger.batches)))
        else:
            await ingest(load, client, load.kinds[NEW], ledger.new_batch(rng))


async def drive(base: str, tenant: Tenant, clients: int, seconds: float,
                seed: int) -> tuple[Load, float]:
    """All clients over one connection pool as wide as they are many; (load, elapsed s)."""
    load = Load(tenant, 0.0, {name: Kind(name, weight) for name, weight in MIX.items()})
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # Generous: a slow answer is measured as such rather than turned into an error.
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        started = time.monotonic()
        load.deadline = started + seconds
        await asyncio.gather(*(client_loop(load, client, seed * 1000 + n)
                               for n in range(clients)))
        elapsed = time.monotonic() - started
    return load, elapsed


# name → (statement, takes the prefix as $2). $1 is the account.
_EVENTS = (" COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0),"
           " COALESCE(SUM(cost_nanos), 0) FROM usage_events WHERE account_id = $1")
COUNTS: dict[str, tuple[str, bool]] = {
    "live": ("SELECT COUNT(*), COUNT(DISTINCT event_id)," + _EVENTS + " AND event_id LIKE $2",
             True),
    "events": ("SELECT COUNT(*), COUNT(DISTINCT event_id)," + _EVENTS, False),
    **{table: ("SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(tokens_in), 0),"
               " COALESCE(SUM(tokens_out), 0), COALESCE(SUM(cost_usd), 0),"
               f" COALESCE(SUM(cost_nanos), 0) FROM {table} WHERE account_id = $1", False)
       for table in ROLLUPS},
}


def read_counts(backend: str, url: str, prefix: str) -> dict[str, list[int]]:
    """Every figure of :data:`COUNTS`, read straight from the database, not via meterql."""
    pattern = prefix + "%"
    if backend == "sqlite":
        connection = sqlite3.connect(url)
        try:
            # "$1" becomes "?1": SQLite's numbered parameters.
            return {name: [int(v) for v in connection.execute(
                        sql.replace("$", "?"), (BIG, pattern) if live else (BIG,)).fetchone()]
                    for name, (sql, live) in COUNTS.items()}
        finally:
            connection.close()

    async def fetch() -> dict[str, list[int]]:
        connection = await asyncpg.connect(url)
        try:
            return {name: [int(v) for v in await connection.fetchrow(
                        sql, *((BIG, pattern) if live else (BIG,)))]
                    for name, (sql, live) in COUNTS.items()}
        finally:
            await connection.close()

    return asyncio.run(fetch())


def verify(load: Load, counts: dict[str, list[int]]) -> dict[str, Any]:
    """Exactly once: what the answers accepted is what is stored, and rollups agree.

    Each check is (expected, found) so that the report can show a mismatch.
    """
    ledger = load.ingest
    accepted = sum(ledger.accepted)
    live_rows, live_ids, *_ = counts["live"]
    rows, ids, tokens_in, tokens_out, cost_nanos = counts["events"]
    # A batch answered 200 at least once has had each of its events accepted
    # exactly once over all its sends; a batch never answered, not at all.
    batches = [a for a, answered in zip(ledger.accepted, ledger.answered, strict=True)
               if answered]
    checks: dict[str, tuple[int, int]] = {
        "stored live events = accepted": (accepted, live_rows),
        "distinct live event ids = stored live events": (live_rows, live_ids),
        "distinct event ids = events of the account": (rows, ids),
        "events of the account = imported + accepted": (load.tenant.events + accepted, rows),
        "answered batches accepted exactly once": (
            BATCH * len(batches), sum(batches)),
    }
    for table in ROLLUPS:
        requests, r_in, r_out, usd, nanos = counts[table]
        checks[f"{table}: requests = events"] = (rows, requests)
        checks[f"{table}: tokens = events' tokens"] = (tokens_in + tokens_out, r_in + r_out)
        checks[f"{table}: cost = events' cost"] = (cost_nanos, usd * 10**9 + nanos)
    wrong = {name: {"expected": want, "found": got}
             for name, (want, got) in checks.items() if want != got}
    return {"accepted": accepted, "stored_live": live_rows, "events": rows,
            "checks": {name: list(pair) for name, pair in checks.items()},
            "mismatches": wrong, "exact": not wrong}


def percentiles(samples: list[float]) -> dict[str, float | None]:
    if len(samples) < 2:
        return {"p50_ms": samples[0] if samples else None,
                "p99_ms": samples[0] if samples else None}
    return {"p50_ms": statistics.median(samples),
            "p99_ms": statistics.quantiles(samples, n=100, method="inclusive")[98]}


def summarise(load: Load, elapsed: float) -> dict[str, Any]:
    """Per kind and in all: requests, throughput, latencies, statuses, failures."""
    kinds: dict[str, dict[str, Any]] = {}
    for name, kind in load.kinds.items():
        kinds[name] = {"weight": kind.weight, "requests": len(kind.latencies_ms)
                       + kind.transport_errors, **percentiles(kind.latencies_ms),
                       "statuses": {str(k): v for k, v in sorted(kind.statuses.items())},
                       "failures": kind.failures, "transport_errors": kind.transport_errors,
                       "examples": kind.examples}
    total = sum(k["requests"] for k in kinds.values())
    everything = [ms for kind in load.kinds.values() for ms in kind.latencies_ms]
    ledger = load.ingest
    return {
        "elapsed_s": elapsed, "requests": total, "requests_per_s": total / elapsed,
        **percentiles(everything),
        "status_5xx": sum(n for k in load.kinds.values()
                          for code, n in k.statuses.items() if code >= 500),
        "failures": sum(k["failures"] for k in kinds.values()),
        "transport_errors": sum(k["transport_errors"] for k in kinds.values()),
        "kinds": kinds,
        "ingest": {"batch": BATCH, "batches": len(ledger.batches), "sends": ledger.sends,
                   "accepted": sum(ledger.accepted), "duplicates": ledger.duplicates,
                   "accepted_per_s": sum(ledger.accepted) / elapsed},
    }


def server_failures(log: str) -> dict[str, Any]:
    """Tracebacks and 5xx access lines in the server's log, and what else it said.

    Every line but uvicorn's start-up and access lines is kept (the first
    ones), so that a failed run's cause (a warning, a traceback) is in the
    results file after the temporary directory is gone.
    """
    first = log.find("Traceback")
    said = [line for line in log.splitlines()
            if 'HTTP/1.1"' not in line and not line.startswith("INFO:")]
    return {"tracebacks": log.count("Traceback"),
            "access_5xx": len(re.findall(r'HTTP/1\.1" 5\d\d', log)),
            "first_traceback": log[first:first + 4000] if first >= 0 else None,
            "other_lines": len(said), "first_other_lines": said[:KEPT_FAILURES * 4]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate, import, serve, load, stop, count; the temporary files go with it."""
    backend = args.backend
    with tempfile.TemporaryDirectory(prefix="meterql-load-") as tmp:
        workdir = Path(tmp)
        print(f"[{backend}] generating a tenant of {args.events:,} events", flush=True)
        tenant = write_tenant(workdir / "tenant.json", args.events, args.seed, datetime.now(UTC))
        with database(backend, args.pg_url, workdir) as (url, naive_url):
            env = {**os.environ, "METERQL_DATABASE_URL": url, **server_env(args)}
            print(f"[{backend}] meterql load", flush=True)
            imported = run_import(tenant.path, env, workdir)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            serve = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port),
                     "--workers", str(args.workers)]
            with process(serve, env, workdir / "serve.log") as child:
                wait_ready(f"{base}/v1/billing/trial-status",
                           {"Authorization": f"Bearer {tenant.read_token}"}, child)
                print(f"[{backend}] {args.clients} clients for {args.seconds:g} s", flush=True)
                load, elapsed = asyncio.run(drive(base, tenant, args.clients, args.seconds,
                                                  args.seed))
            # Counted once the server is gone: nothing can write any more.
            verification = verify(load, read_counts(backend, naive_url, load.ingest.prefix))
            info = machine(backend, naive_url)
        log = (workdir / "serve.log").read_text(errors="replace")
    summary = summarise(load, elapsed)
    server = server_failures(log)
    ok = (not summary["status_5xx"] and not summary["failures"] and verification["exact"]
          and not server["tracebacks"])
    return {"kind": "load", "backend": backend, "events": args.events,
            "clients": args.clients, "seconds": args.seconds, "workers": args.workers,
            "date": datetime.now(UTC).isoformat(),
            "command": shlex.join(["python", *sys.argv]), "machine": info,
            "server_env": server_env(args), "import_seconds": imported["seconds"],
            **summary, "verification": verification, "server": server, "ok": ok}


def print_result(result: dict[str, Any]) -> None:
    print(f"\n{result['backend']}: {result['clients']} clients, {result['elapsed_s']:.1f} s, "
          f"{result['requests']:,} requests, {result['requests_per_s']:,.0f} requests/s")
    print(f"{'kind':44} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} statuses")
    for name, kind in result["kinds"].items():
        p50, p99 = (("-" if v is None else f"{v:.1f}") for v in (kind["p50_ms"], kind["p99_ms"]))
        print(f"{name:44} {kind['requests']:8,} {p50:>8} {p99:>8} {kind['failures']:6} "
              f"{kind['statuses']}")
        for example in kind["examples"][:2]:
            print(f"    {json.dumps(example)[:300]}")
    ingest, check = result["ingest"], result["verification"]
    print(f"ingest: {ingest['accepted']:,} events accepted ({ingest['accepted_per_s']:,.0f}/s) "
          f"in {ingest['batches']:,} batches, {ingest['duplicates']:,} duplicates over "
          f"{ingest['sends']:,} sends")
    print(f"5xx: {result['status_5xx']}; failed: {result['failures']}; transport errors: "
          f"{result['transport_errors']}; server tracebacks: {result['server']['tracebacks']}")
    print(f"exactly once: {'yes' if check['exact'] else 'NO'} ({check['stored_live']:,} live "
          f"events stored for {check['accepted']:,} accepted)")
    for name, wrong in check["mismatches"].items():
        print(f"    {name}: expected {wrong['expected']}, found {wrong['found']}")
    for line in result["server"]["first_other_lines"][:8]:
        print(f"    server: {line[:300]}")
    if result["server"]["first_traceback"]:
        print(f"first server traceback:\n{result['server']['first_traceback']}")
    print("OK" if result["ok"] else "FAILED")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an existing database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--events", type=int, default=100_000,
                        help="events of the imported tenant")
    parser.add_argument("--workers", type=int, default=1, help="meterql serve --workers")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--server-env", action="append", metavar="METERQL_KEY=VALUE",
                        help="a setting for meterql's processes (recorded with the result)")
    parser.add_argument("--write-docs", action="store_true",
                        help="then render docs/performance.md from benchmarks/results/*.json")
    args = parser.parse_args()
    server_env(args)
    result = run(args)
    print_result(result)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"load-{args.backend}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(HERE.parent)}")
    if args.write_docs:
        docs, count = write_docs()
        print(f"wrote {docs.relative_to(HERE.parent)} from {count} result files")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
