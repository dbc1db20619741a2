"""Sustained live ingest, and what it leaves in PostgreSQL's rollup tables.

``sustain`` runs concurrent senders (asyncio tasks sharing one httpx pool),
each POSTing batches of fresh events for the big tenant to
``/v1/usage/events`` with the ingest token until the deadline, timestamps
within the day before each batch is made. A batch is built just before it
is sent (its events are new, so it cannot be made in advance for a run of
unknown length); it costs the client a few ms against the server's tens.

``table_stats`` reads ``pg_stat_user_tables`` for the tables named
``usage_%`` (the events and their rollups), ``end_users%`` and
``%_last_days`` (the latest days of instances and models): live and
dead tuples, writes, (auto)vacuums and sizes. PostgreSQL's backends report
their counts when idle, at most ``STATS_DELAY_S`` late, so the readings are
taken that long after the writes stop. ``autovacuum_settings`` records
whether autovacuum runs at its defaults.
"""

from __future__ import annotations

import asyncio
import functools
import random
import secrets
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from dataset import END_USERS, INSTANCES, MODELS

# PGSTAT_IDLE_INTERVAL (10 s): the latest an idle backend reports its counts.
STATS_DELAY_S = 11.0

_TABLES = (r"(relname LIKE 'usage\_%' OR relname LIKE 'end\_users%'"
           r" OR relname LIKE '%\_last\_days')")


def batch(rng: random.Random, prefix: str, size: int, now: datetime) -> bytes:
    """``size`` new events, ids under ``prefix``, timestamps within the day before ``now``.

    The text is what ``json.dumps`` makes of the events (keys in the same
    order, the same separators), written out directly: every value is plain
    ASCII with nothing to escape, and the senders share the machine with the
    gateways they measure. Built with ``datetime`` and ``json.dumps``, a
    batch of 1,000 cost the client 4.8-5.1 ms; this way, 2.4-2.6 ms.
    """
    now_ms = int(now.timestamp() * 1000)
    draw = rng.random  # uniform integers as int(draw() * n): a third of randrange's cost
    parts = []
    for n in range(size):
        at_ms = now_ms - 1_000 - int(draw() * 86_398_000)
        parts.append(
            f'{{"event_id": "{prefix}-{n:05d}", '
            f'"instance_id": "inst-{int(draw() * INSTANCES):02d}", '
            f'"model": "model-{int(draw() * MODELS):02d}", '
            f'"timestamp": "{_second(at_ms // 1_000)}.{at_ms % 1_000:03d}Z", '
            f'"tokens_in": {50 + int(draw() * 7_951)}, '
            f'"tokens_out": {10 + int(draw() * 1_991)}, '
            f'"end_user_id": "user-{int(draw() * END_USERS):05d}"}}'
        )
    return ("[" + ", ".join(parts) + "]").encode()


@functools.lru_cache(maxsize=200_000)
def _second(epoch: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of a whole second since 1970."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


async def _sustain(base: str, token: str, seconds: float, senders: int,
                   size: int, seed: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    tag = secrets.token_hex(3)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    accepted = transport_errors = 0
    failures: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)

    async def sender(number: int, client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal accepted, transport_errors
        rng = random.Random(seed * 1_000 + number)
        sent = 0
        while time.monotonic() < deadline:
            body = batch(rng, f"sustained-{tag}-{number}-{sent:07d}", size, datetime.now(UTC))
            sent += 1
            started = time.perf_counter()
            try:
                response = await client.post("/v1/usage/events", content=body)
            except httpx.TransportError as why:
                transport_errors += 1
                if len(failures) < 5:
                    failures.append({"error": f"{type(why).__name__}: {why}"})
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] += 1
            if response.is_success:
                accepted += int(response.json()["accepted"])
            elif len(failures) < 5:
                failures.append({"status": response.status_code, "body": response.text[:300]})

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300,
                                 limits=limits) as client:
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(sender(n, client, deadline) for n in range(senders)))
        elapsed = time.perf_counter() - started
    batches = sum(statuses.values())
    return {
        "seconds": seconds, "elapsed_s": elapsed, "senders": senders, "batch": size,
        "batches": batches, "accepted": accepted, "events_per_s": accepted / elapsed,
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "transport_errors": transport_errors,
        "batch_p50_ms": statistics.median(latencies) if latencies else None,
        "batch_p99_ms": (statistics.quantiles(latencies, n=100, method="inclusive")[98]
                         if len(latencies) > 1 else None),
        "failures": failures,
    }


def sustain(base: str, token: str, seconds: float, senders: int = 8, size: int = 1_000,
            seed: int = 5) -> dict[str, Any]:
    """Live ingest for ``seconds`` by ``senders`` concurrent senders; rate, statuses, errors."""
    return asyncio.run(_sustain(base, token, seconds, senders, size, seed))


async def _fetch(url: str, sql: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


def table_stats(url: str) -> dict[str, dict[str, Any]]:
    """Per table named as ``_TABLES`` says: tuples, writes, vacuums and size."""
    rows = asyncio.run(_fetch(url, f"""
        SELECT relname, n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del,
               vacuum_count, autovacuum_count, analyze_count, autoanalyze_count,
               last_autovacuum, last_autoanalyze, pg_total_relation_size(relid) AS bytes
        FROM pg_stat_user_tables WHERE {_TABLES} ORDER BY relname"""))
    return {row.pop("relname"): {key: (value.isoformat() if isinstance(value, datetime)
                                       else value) for key, value in row.items()}
            for row in rows}


def autovacuum_settings(url: str) -> dict[str, Any]:
    """The server's ``autovacuum%`` settings and the tables' own storage options.

    ``defaults`` is true when every setting has PostgreSQL's built-in value
    (wherever it was set) and no table measured sets an ``autovacuum_*`` option.
    """
    settings = asyncio.run(_fetch(url, """
        SELECT name, setting, boot_val, source, sourcefile FROM pg_settings
        WHERE name LIKE 'autovacuum%' OR name = 'track_counts' ORDER BY name"""))
    tables = asyncio.run(_fetch(url, f"""
        SELECT relname, reloptions FROM pg_class
        WHERE relkind = 'r' AND reloptions IS NOT NULL AND {_TABLES}"""))
    changed = {row["name"]: {"setting": row["setting"], "source": row["source"],
                             "file": row["sourcefile"]}
               for row in settings if row["setting"] != row["boot_val"]}
    options = {row["relname"]: list(row["reloptions"]) for row in tables
               if any(option.startswith("autovacuum") for option in row["reloptions"])}
    return {"defaults": not changed and not options,
            "settings": {row["name"]: row["setting"] for row in settings},
            "not_default": changed, "table_options": options}
