"""End-to-end benchmark of meterql: import, read routes, GraphQL, live ingest.

Everything goes through the real entry points (``meterql load``, ``meterql
serve``, HTTP) and is set beside two yardsticks measured in the same run: the
HTTP floor (a bare Starlette app under the same uvicorn, answering the same
response) and the naive answer (hand-written SQL aggregates over
usage_events, see exact.py). Before anything is timed, and before live ingest
writes, every sampled route's body is checked against the naive SQL's rows.

The whole matrix (issue 5), results in benchmarks/results/, then the docs:

    python benchmarks/bench.py --sizes 100000,300000,1000000 \\
        --backend sqlite,postgresql --profile /v1/billing/usage --write-docs

One size on one backend, or only re-render docs/performance.md:

    python benchmarks/bench.py --events 100000 --backend postgresql \\
        --pg-url postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/bench.py --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from dataset import BIG, INSTANCES, MODELS, SMALL_EVENTS, Tenant, write_tenant
from exact import DAYS, NAIVE, bounds, check, check_pricing, plain
from report import write_docs

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCUMENTS = HERE.parent / "src" / "meterql" / "rest_compat" / "documents"

# (route, GraphQL document, variables). The naive SQL of each route that has
# one is in exact.NAIVE.
ROUTES: list[tuple[str, str, dict[str, int]]] = [
    (f"/v1/metrics/summary?days={DAYS}", "metrics_summary", {"days": DAYS}),
    (f"/v1/metrics/instances?days={DAYS}", "metrics_instances", {"days": DAYS}),
    (f"/v1/metrics/models?days={DAYS}", "metrics_models", {"days": DAYS}),
    (f"/v1/metrics/usage?days={DAYS}", "metrics_usage", {"days": DAYS}),
    ("/v1/billing", "billing", {}),
    ("/v1/billing/trial-status", "billing_trial_status", {}),
    ("/v1/billing/usage", "billing_usage", {}),
    (f"/v1/billing/usage/chart?days={DAYS}", "billing_usage_chart", {"days": DAYS}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def database(backend: str, pg_url: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """A fresh database: (SQLAlchemy URL for meterql, URL for the naive queries).

    PostgreSQL gets its own throwaway database so a run never touches data it
    did not create, and is dropped even when the run fails.
    """
    if backend == "sqlite":
        path = workdir / "bench.db"
        yield f"sqlite+aiosqlite:///{path}", str(path)
        return
    name = f"meterql_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(pg_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    naive_url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    try:
        yield naive_url.replace("postgresql://", "postgresql+asyncpg://", 1), naive_url
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def run_import(path: Path, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """``meterql load`` in a child, timed from spawn to exit (migration included).

    The child is started by ``peak_rss.py``, a bare interpreter, so that its
    peak RSS is its own: spawned from this process, the kernel would also
    charge it with this process's memory, held before ``exec``.
    """
    report = workdir / "load.json"
    argv = [sys.executable, str(HERE / "peak_rss.py"), str(report),
            sys.executable, "-m", "meterql.cli", "load", str(path)]
    with (workdir / "load.out").open("wb") as out:
        subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    output = (workdir / "load.out").read_text()
    measured = json.loads(report.read_text())
    if measured["exit_code"]:
        raise SystemExit(f"meterql load failed:\n{output}")
    return {"seconds": measured["seconds"], "peak_rss_mib": measured["peak_rss_kib"] / 1024,
            "output": output.strip()}


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server child in its own session, so SIGTERM reaches uvicorn and its workers."""
    with log.open("wb") as err:
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
    try:
        yield child
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def wait_ready(url: str, headers: dict[str, str], child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"server exited with {child.returncode} before answering {url}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"no answer from {url}")


def timed(call: Callable[[], httpx.Response], warmup: int, count: int) -> dict[str, Any]:
    """Sequential calls after a warm-up; median and p99 in ms.

    Failures (non-2xx, or a GraphQL answer with errors) are counted rather than
    raised, so one bad route shows up in the table instead of hiding the rest.
    """
    for _ in range(warmup):
        call()
    samples, failures = [], 0
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        failures += not response.is_success or b'"errors"' in response.content
    return {"median_ms": statistics.median(samples),
            "p99_ms": statistics.quantiles(samples, n=100, method="inclusive")[98],
            "failures": failures}


def run_naive(backend: str, url: str, plan: dict[str, tuple[datetime, datetime]],
              runs: int) -> dict[str, dict[str, Any]]:
    """Each route's naive statements, ``runs + 1`` times; the first run warms caches.

    Returns per route the samples (ms, all statements of the route together,
    first run dropped unless it is the only one) and the rows of the last run.
    """
    if backend == "sqlite":
        return _naive_sqlite(url, plan, runs)
    return asyncio.run(_naive_postgresql(url, plan, runs))


def _naive_sqlite(path: str, plan: dict[str, tuple[datetime, datetime]],
                  runs: int) -> dict[str, dict[str, Any]]:
    """Straight through sqlite3, bounds in meterql's stored text form (naive UTC)."""
    connection = sqlite3.connect(path)
    try:
        out = {}
        for route, (start, end) in plan.items():
            window = [moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                      for moment in (start, end)]
            statements = [sql.replace("$", "?") for sql in NAIVE[route][1]]
            samples, rows = [], []
            for _ in range(runs + 1):
                started = time.perf_counter()
                rows = [connection.execute(sql, [BIG, *window]).fetchall() for sql in statements]
                samples.append((time.perf_counter() - started) * 1000)
            out[route] = {"samples": samples[1:] or samples,
                          "rows": [[plain(row) for row in result] for result in rows]}
        return out
    finally:
        connection.close()


async def _naive_postgresql(url: str, plan: dict[str, tuple[datetime, datetime]],
                            runs: int) -> dict[str, dict[str, Any]]:
    """Through asyncpg, each statement prepared once (not timed) as a careful hand would."""
    connection = await asyncpg.connect(url)
    try:
        out = {}
        for route, (start, end) in plan.items():
            statements = [await connection.prepare(sql) for sql in NAIVE[route][1]]
            samples, rows = [], []
            for _ in range(runs + 1):
                started = time.perf_counter()
                rows = [await statement.fetch(BIG, start, end) for statement in statements]
                samples.append((time.perf_counter() - started) * 1000)
            out[route] = {"samples": samples[1:] or samples,
                          "rows": [[plain(row) for row in result] for result in rows]}
        return out
    finally:
        await connection.close()


def graphql_request(document: str, variables: dict[str, int]) -> dict[str, Any]:
    query = (DOCUMENTS / f"{document}.graphql").read_text()
    return {"query": query, "variables": variables}


def snapshot(client: httpx.Client, tenant: Tenant, backend: str,
             naive_url: str) -> tuple[date, dict[str, Any], dict[str, Any], int]:
    """Every route's body (REST and GraphQL) and the naive rows, within one UTC day.

    Taken while nothing writes (before live ingest), so the bodies and the
    rows see the same events. The server's "today" and the naive window must
    be the same UTC day: if midnight passes during the snapshot, it is taken
    again.
    """
    for attempt in range(1, 4):
        today = datetime.now(UTC).date()
        captured = {}
        for route, document, variables in ROUTES:
            rest = client.get(route)
            graphql = client.post("/graphql", json=graphql_request(document, variables))
            captured[route] = {
                "status": rest.status_code, "body": rest.content.decode(),
                "content_type": rest.headers.get("content-type"),
                "content_length": rest.headers.get("content-length"),
                "graphql": graphql.json() if graphql.is_success else None,
            }
        plan = {route: bounds(route, today, tenant) for route in NAIVE}
        rows = run_naive(backend, naive_url, plan, runs=0)
        if datetime.now(UTC).date() == today:
            return today, captured, rows, attempt
    raise SystemExit("the snapshot crossed UTC midnight three times running")


def check_exactness(today: date, captured: dict[str, Any], rows: dict[str, Any],
                    tenant: Tenant) -> dict[str, Any]:
    """Sampled routes against the naive rows; every GraphQL twin against its REST body."""
    routes = {}
    for route in NAIVE:
        answer = captured[route]
        if answer["status"] != 200:
            routes[route] = {"exact": False, "mismatch_count": 1, "mismatches": [
                {"at": "status", "route": answer["status"], "naive": 200}]}
        else:
            routes[route] = check(route, json.loads(answer["body"]), rows[route]["rows"],
                                  today, tenant)
    graphql_same = {}
    for route, answer in captured.items():
        data = (answer["graphql"] or {}).get("data") or {}
        graphql_same[route] = (answer["status"] == 200 and "errors" not in (answer["graphql"] or {})
                               and data.get("body") == json.loads(answer["body"]))
    pricing = check_pricing(rows[f"/v1/metrics/models?days={DAYS}"]["rows"][0], tenant)
    return {"today": today.isoformat(), "routes": routes, "graphql_same": graphql_same,
            "pricing": pricing,
            "all_exact": (all(v["exact"] for v in routes.values()) and pricing["exact"]
                          and all(graphql_same.values()))}


def ingest_batches(count: int, size: int, now: datetime) -> list[bytes]:
    """Pre-serialised batches of new events, so the timing holds only meterql's work."""
    stamp = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    tag = secrets.token_hex(3)
    return [json.dumps([
        {"event_id": f"live-{tag}-{b:04d}-{n:05d}", "instance_id": f"inst-{n % INSTANCES:02d}",
         "model": f"model-{n % MODELS:02d}", "timestamp": stamp, "tokens_in": 100 + n % 900,
         "tokens_out": 10 + n % 300, "end_user_id": f"user-{n:05d}"}
        for n in range(size)]).encode() for b in range(count)]


def measure_ingest(base: str, token: str, batches: list[bytes]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    accepted = 0
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        started = time.perf_counter()
        for batch in batches:
            response = client.post("/v1/usage/events", content=batch)
            response.raise_for_status()
            accepted += response.json()["accepted"]
        elapsed = time.perf_counter() - started
    return {"batches": len(batches), "accepted": accepted, "seconds": elapsed,
            "events_per_s": accepted / elapsed}


def measure_server(tenant: Tenant, env: dict[str, str], naive_url: str, backend: str,
                   args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Exactness, routes, GraphQL twins, naive SQL, ingest, then the floor, in that order.

    Everything that reads is done before live ingest writes.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {tenant.read_token}"}
    serve = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port)]
    with process(serve, env, workdir / "serve.log") as child:
        wait_ready(f"{base}/v1/billing/trial-status", auth, child)
        with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
            today, captured, rows, attempts = snapshot(client, tenant, backend, naive_url)
            exactness = {**check_exactness(today, captured, rows, tenant),
                         "snapshot_attempts": attempts}
            results: dict[str, Any] = {}
            for route, document, variables in ROUTES:
                request = graphql_request(document, variables)
                results[route] = {
                    "capture": {key: captured[route][key]
                                for key in ("status", "content_type", "content_length")},
                    "rest": timed(partial(client.get, route), args.warmup, args.requests),
                    "graphql": timed(partial(client.post, "/graphql", json=request),
                                     args.warmup, args.requests),
                }
        plan = {route: bounds(route, today, tenant) for route in NAIVE}
        for route, naive in run_naive(backend, naive_url, plan, args.naive_runs).items():
            results[route]["naive"] = {"median_ms": statistics.median(naive["samples"]),
                                       "statements": len(NAIVE[route][1])}
        ingest = measure_ingest(base, tenant.ingest_token,
                                ingest_batches(args.ingest_batches, 1_000, datetime.now(UTC)))
    server_log = (workdir / "serve.log").read_text(errors="replace")
    bodies = {route: {key: answer[key] for key in ("status", "body", "content_type")}
              for route, answer in captured.items()}
    (workdir / "bodies.json").write_text(json.dumps(bodies))
    floor_port = free_port()
    floor = [sys.executable, str(HERE / "floor.py"), str(workdir / "bodies.json"), str(floor_port)]
    floor_base = f"http://127.0.0.1:{floor_port}"
    with process(floor, env, workdir / "floor.log") as child:
        wait_ready(f"{floor_base}/v1/billing/trial-status", auth, child)
        with httpx.Client(base_url=floor_base, headers=auth, timeout=60) as client:
            for route, *_ in ROUTES:
                results[route]["floor"] = {
                    **timed(partial(client.get, route), args.warmup, args.requests),
                    "same_response": same_response(client.get(route), captured[route]),
                }
    return {"routes": results, "exactness": exactness, "ingest": ingest,
            "server_tracebacks": server_log.count("Traceback")}


def same_response(floor: httpx.Response, meterql: dict[str, Any]) -> bool:
    """The floor answered the very bytes, status, content type and length meterql did."""
    return bool(floor.status_code == meterql["status"]
            and floor.content == meterql["body"].encode()
            and floor.headers.get("content-type") == meterql["content_type"]
            and floor.headers.get("content-length") == meterql["content_length"])


def profile_route(route: str, url: str, tenant: Tenant, args: argparse.Namespace,
                  backend: str) -> dict[str, Any]:
    """pyinstrument over ``--profile-requests`` calls of one route, in-process.

    The app is ``create_app(Settings(database_url=...))`` behind httpx's
    ASGITransport, so the profile holds meterql's own work, not uvicorn's.
    Run after the measurements, on the same database (live ingest included).
    """
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install pyinstrument") from None
    from meterql.app import create_app
    from meterql.config import Settings

    overrides = {key.removeprefix("METERQL_").lower(): value
                 for key, value in server_env(args).items()}
    app = create_app(Settings(database_url=url, **overrides))
    auth = {"Authorization": f"Bearer {tenant.read_token}"}

    async def main() -> tuple[Profiler, list[float], int]:
        transport = httpx.ASGITransport(app=app)
        async with (app.router.lifespan_context(app),
                    httpx.AsyncClient(transport=transport, base_url="http://bench",
                                      headers=auth, timeout=120) as client):
            for _ in range(args.warmup):
                await client.get(route)
            samples, failures = [], 0
            profiler = Profiler(async_mode="enabled")
            profiler.start()
            for _ in range(args.profile_requests):
                started = time.perf_counter()
                response = await client.get(route)
                samples.append((time.perf_counter() - started) * 1000)
                failures += not response.is_success
            profiler.stop()
            return profiler, samples, failures

    profiler, samples, failures = asyncio.run(main())
    path = RESULTS / f"profile-{backend}-{tenant.events}.txt"
    header = (f"# pyinstrument profile of GET {route}: {backend}, {tenant.events:,} events,\n"
              f"# {len(samples)} in-process requests (ASGITransport, no HTTP server), "
              f"median {statistics.median(samples):.2f} ms, {failures} failed\n"
              f"# command: {shlex.join(['python', *sys.argv])}\n\n")
    path.write_text(header + profiler.output_text(unicode=True, color=False))
    return {"route": route, "requests": len(samples), "failures": failures,
            "median_ms": statistics.median(samples), "file": path.name}


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """``--server-env KEY=VALUE`` settings (``METERQL_`` names) for meterql's processes."""
    pairs = dict(item.split("=", 1) for item in args.server_env or [])
    for key in pairs:
        if not key.startswith("METERQL_"):
            raise SystemExit(f"--server-env takes METERQL_ settings, not {key}")
    return pairs


def resolve_route(wanted: str) -> str:
    """``--profile /v1/metrics/summary`` means the measured route, ``?days=90`` included."""
    for route, *_ in ROUTES:
        if wanted in (route, route.split("?")[0]):
            return route
    return wanted


def machine(backend: str, naive_url: str) -> dict[str, Any]:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
    if backend == "postgresql":
        async def version() -> str:
            connection = await asyncpg.connect(naive_url)
            try:
                return str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()
        info["postgresql"] = asyncio.run(version())
    return info


def run_size(events: int, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """One full run at one size on one backend; the temporary files go with it."""
    with tempfile.TemporaryDirectory(prefix="meterql-bench-") as tmp:
        workdir = Path(tmp)
        print(f"[{backend} {events:,}] generating the tenant", flush=True)
        tenant = write_tenant(workdir / "tenant.json", events, args.seed, datetime.now(UTC))
        with database(backend, args.pg_url, workdir) as (url, naive_url):
            env = {**os.environ, "METERQL_DATABASE_URL": url, **server_env(args)}
            print(f"[{backend} {events:,}] meterql load", flush=True)
            imported = run_import(tenant.path, env, workdir)
            imported["events_per_s"] = (events + SMALL_EVENTS) / imported["seconds"]
            imported["file_mib"] = tenant.path.stat().st_size / 2**20
            print(f"[{backend} {events:,}] serving and measuring", flush=True)
            measured = measure_server(tenant, env, naive_url, backend, args, workdir)
            if args.profile:
                print(f"[{backend} {events:,}] profiling {args.profile}", flush=True)
                measured["profile"] = profile_route(resolve_route(args.profile), url, tenant,
                                                    args, backend)
            info = machine(backend, naive_url)
    return {"backend": backend, "events": events, "date": datetime.now(UTC).isoformat(),
            "command": shlex.join(["python", *sys.argv]), "machine": info,
            "requests_per_route": args.requests, "server_env": server_env(args),
            "import": imported, **measured}


def print_table(result: dict[str, Any]) -> None:
    exact = result["exactness"]
    print(f"\n{result['backend']} {result['events']:,} events")
    print(f"{'route':34} {'REST med':>9} {'p99':>8} {'GQL med':>8} {'floor':>7} "
          f"{'ratio':>6} {'naive':>8} {'fails':>5} exact")
    for route, row in result["routes"].items():
        naive = row.get("naive", {}).get("median_ms")
        fails = row["rest"]["failures"] + row["graphql"]["failures"]
        verdict = exact["routes"].get(route, {}).get("exact")
        same = "" if exact["graphql_same"][route] else " (GraphQL differs)"
        print(f"{route:34} {row['rest']['median_ms']:9.2f} {row['rest']['p99_ms']:8.2f} "
              f"{row['graphql']['median_ms']:8.2f} {row['floor']['median_ms']:7.2f} "
              f"{row['rest']['median_ms'] / row['floor']['median_ms']:6.1f} "
              f"{'-' if naive is None else f'{naive:.2f}':>8} {fails:5} "
              f"{'-' if verdict is None else ('yes' if verdict else 'NO')}{same}")
        for wrong in exact["routes"].get(route, {}).get("mismatches", [])[:3]:
            print(f"    {wrong['at']}: route {wrong['route']!r}, naive {wrong['naive']!r}")
    imported, ingest = result["import"], result["ingest"]
    print(f"import: {imported['events_per_s']:,.0f} events/s, peak RSS "
          f"{imported['peak_rss_mib']:.0f} MiB; ingest: {ingest['events_per_s']:,.0f} events/s; "
          f"stored cost = own pricing: {exact['pricing']['exact']}; "
          f"all exact: {exact['all_exact']}")
    if "profile" in result:
        print(f"profile of {result['profile']['route']}: "
              f"benchmarks/results/{result['profile']['file']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events in the big tenant")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 100000,300000,1000000")
    parser.add_argument("--backend", default="sqlite",
                        help="sqlite, postgresql, or both: sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an existing database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per route")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--naive-runs", type=int, default=20)
    parser.add_argument("--ingest-batches", type=int, default=20, help="batches of 1,000")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--profile", metavar="ROUTE",
                        help="after measuring, profile ROUTE in-process with pyinstrument")
    parser.add_argument("--profile-requests", type=int, default=300)
    parser.add_argument("--server-env", action="append", metavar="METERQL_KEY=VALUE",
                        help="a setting for meterql's processes (recorded with the result)")
    parser.add_argument("--write-docs", action="store_true",
                        help="render docs/performance.md from benchmarks/results/*.json")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backend.split(",") if name.strip()]
    for name in backends:
        if name not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {name!r}: sqlite or postgresql")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [args.events] if args.events else [])
    if not sizes and not args.write_docs:
        parser.error("give --events, --sizes or --write-docs")
    server_env(args)
    RESULTS.mkdir(exist_ok=True)
    for backend in backends:
        for events in sizes:
            result = run_size(events, backend, args)
            path = RESULTS / f"{backend}-{events}.json"
            path.write_text(json.dumps(result, indent=2) + "\n")
            print_table(result)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if args.write_docs:
        docs, count = write_docs(HERE.parent)
        print(f"wrote {docs.relative_to(HERE.parent)} from {count} result files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
