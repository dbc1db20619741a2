"""Settings, read from the environment (prefix ``METERQL_``) or passed in.

Settings are always handed to :func:`meterql.app.create_app`; nothing reads
them from a module global, so tests and several apps in one process never
share state by accident.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterql.web.logs import LogFormat, LogLevel


class FreePlan(BaseSettings):
    """Limits shown when an account has no live subscription (the seeds' defaults)."""

    model_config = SettingsConfigDict(env_prefix="METERQL_FREE_", extra="ignore")

    api_call_limit: int = Field(default=10_000, ge=0)
    conversation_limit: int = Field(default=1_000, ge=0)
    instance_limit: int = Field(default=1, ge=0)
    max_sites_per_node: int = Field(default=25, ge=0)
    token_allowance: int = Field(default=100_000, ge=0)


# The drivers meterql talks through, and the schemes that mean them.
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
_FORMS = "postgresql://user@host/dbname or sqlite:///path/to/meterql.db"


def database_url(value: str) -> str:
    """``value`` with meterql's driver named: ``postgresql://`` and ``sqlite://`` take
    asyncpg and aiosqlite; any other scheme, or a string that is no URL, is refused
    with a sentence saying what to write (``ValueError``; no password in it)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL; write {_FORMS}") from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"{url.drivername}:// is not a database meterql talks to; write {_FORMS}"
        )
    if driver == url.drivername:
        return value
    return url.set(drivername=driver).render_as_string(hide_password=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERQL_", extra="ignore")

    # postgresql://… and sqlite:///… are read as postgresql+asyncpg://… and
    # sqlite+aiosqlite:///…, the drivers meterql uses.
    database_url: str = "sqlite+aiosqlite:///./meterql.db"
    # Where the trial-status route sends people to upgrade.
    upgrade_url: str = "/billing"
    free_plan: FreePlan = Field(default_factory=FreePlan)
    # SQLite waits this long for a competing writer before giving up.
    sqlite_busy_timeout_ms: int = Field(default=5_000, ge=0)
    # A SQLite read runs in the event loop's thread for at most this much CPU
    # time, then again in a thread of its own (meterql.db.reads); 0: always there.
    sqlite_inline_budget_ms: float = Field(default=3.0, ge=0)
    # Connection pool for server databases (ignored by SQLite).
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    # Bounds that keep a request from hanging on an unreachable server
    # (seconds; server databases only). A request then answers 503.
    db_connect_timeout_s: float = Field(default=1.5, gt=0)
    db_statement_timeout_s: float = Field(default=2.0, gt=0)
    db_pool_timeout_s: float = Field(default=1.5, gt=0)
    # Write transactions at once per process (None: 1 on SQLite, which has
    # one writer anyway, 4 on a server); more wait their turn, in order, up
    # to the queue timeout, then answer 503.
    db_concurrent_writes: int | None = Field(default=None, ge=1)
    db_write_queue_timeout_s: float = Field(default=10.0, gt=0)
    # Raw events are kept this many days (None: forever); `meterql retention
    # apply` lets older whole months go, and older events are refused. The
    # rollups keep every sum (meterql.retention).
    raw_event_retention_days: int | None = Field(default=None, ge=1)
    # Echo SQL to the log (debugging only).
    echo_sql: bool = False

    # Operations (docs/deployment.md, "Monitoring"). /metrics is open to any
    # scraper unless a token is set, then it needs `Authorization: Bearer
    # <token>`; it never shows tenant data either way.
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    # /readyz answers 503 if a trivial query takes longer than this.
    readyz_timeout_s: float = Field(default=1.0, gt=0)
    # `meterql serve`'s logs on stderr: one JSON object a line, or plain text.
    # None: plain text when stderr is a terminal (a person reads it), JSON
    # otherwise (a collector does).
    log_format: LogFormat | None = None
    log_level: LogLevel = "info"

    # GraphQL guards (docs/decisions.md, "Hardening"). `introspection=false`
    # also turns off GraphiQL and "did you mean" suggestions in errors.
    introspection: bool = True
    graphql_max_depth: int = Field(default=10, ge=1)
    graphql_max_aliases: int = Field(default=50, ge=0)
    graphql_max_tokens: int = Field(default=2_000, ge=1)
    graphql_max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # A request body (GraphQL or ingest) must arrive whole within this many
    # seconds of the server starting to read it, else 408: a client
    # trickling its upload must not keep a request open for ever.
    body_timeout_s: float = Field(default=10.0, gt=0)
    # How long `meterql serve` keeps an idle connection open for the next
    # request. A client or proxy reusing a connection at the moment the
    # server closes it gets no answer at all (a reset, a 502), so the server
    # waits longer than they do: httpx keeps idle connections 5 s (uvicorn's
    # own default, which made the load test lose a request or two a run),
    # nginx's upstreams and AWS's load balancers 60 s.
    keep_alive_s: int = Field(default=75, ge=1)
    # Buckets (times groups) all `usage` answers of one request may return
    # together (meterql.points): 200,000 is a year of hours for 22 groups.
    graphql_max_series_points: int = Field(default=200_000, ge=1)
    # Operations per batched POST (a JSON list); 0 turns batching off.
    graphql_max_batch: int = Field(default=0, ge=0)
    # Each worker keeps the answers it made, under their ETags, and answers
    # the same request for an unchanged account from them (meterql.web.answers):
    # this many MiB of them at most; 0 keeps none.
    answer_cache_mb: float = Field(default=32.0, ge=0)

    # Webhooks (docs/webhooks.md). A webhook's host must resolve to public
    # addresses unless private ones are allowed (a receiver on the same
    # network, a test). Each gateway's deliverer looks for due deliveries
    # every `webhook_poll_s`; an attempt gives up after `webhook_timeout_s`; a
    # delivery a gateway took is due again after `webhook_lease_s` if that
    # gateway never said how it went (it died).
    webhook_allow_private: bool = False
    webhook_delivery: bool = True
    webhook_poll_s: float = Field(default=2.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_lease_s: float = Field(default=60.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return database_url(value)
