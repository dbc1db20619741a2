"""What resolvers see: the app's services, and the per-request context built from them."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime

import strawberry

from meterql import buckets
from meterql.auth import authenticate, require_scope
from meterql.buckets import BucketPlan, Granularity, LocalRange
from meterql.budget import PointBudget
from meterql.config import Settings
from meterql.db.accounts import TokenGrant, grant_for_hash
from meterql.db.engine import AsyncConnection, Database, SharedReads
from meterql.errors import InvalidCredentials
from meterql.loaders import Loaders
from meterql.request_facts import RequestFacts
from meterql.windows import Clock


@dataclass(frozen=True, slots=True)
class Services:
    """Made once per app by ``create_app``; shared by every request."""

    settings: Settings
    db: Database
    schema: strawberry.Schema
    clock: Clock


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Context:
    """Made per request, after authentication; ``info.context`` in resolvers."""

    db: Database
    settings: Settings
    grant: TokenGrant
    # One instant per request, so every number in an answer agrees on "today".
    now: datetime
    # The request's one read connection; without it each read takes its own.
    reads: SharedReads | None = None
    # Named in masked errors and log lines (``meterql.request_ids``).
    request_id: str = ""
    # The request's record for its log line and metrics (``meterql.request_facts``).
    facts: RequestFacts = field(default_factory=RequestFacts)
    # DataLoaders of this request alone (``meterql.loaders``; the batch functions
    # are ``meterql.resolvers.batches``), made with it.
    loaders: Loaders[Context] = field(init=False, repr=False, compare=False)
    # Series points every ``usage`` answer of this request may still return
    # (``meterql.budget``), from ``graphql_max_series_points``.
    points: PointBudget = field(init=False, repr=False, compare=False)

    # The buckets of each distinct ``usage`` range and grain asked in this request.
    _plans: dict[tuple[LocalRange, Granularity], BucketPlan] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "loaders", Loaders(self))
        object.__setattr__(
            self, "points", PointBudget(self.settings.graphql_max_series_points)
        )
        object.__setattr__(self, "_plans", {})

    def bucket_plan(self, local: LocalRange, granularity: Granularity) -> BucketPlan:
        """The range cut into buckets, once per request whatever the number of nodes asking."""
        key = (local, granularity)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = buckets.plan(local, granularity)
        return plan

    @property
    def account_id(self) -> str:
        return self.grant.account_id

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for this request's reads (its shared one, when it has one)."""
        return self.reads.lend() if self.reads is not None else self.db.read()

    def require(self, scope: str) -> Context:
        """This context, if its token has ``scope``; else :class:`PermissionDenied`."""
        require_scope(self.grant, scope)
        return self


async def authenticated_context(
    services: Services,
    authorization: str | None,
    request_id: str = "",
    facts: RequestFacts | None = None,
) -> Context:
    """Raises :class:`meterql.errors.AuthenticationError` without a live token.

    ``facts`` (the request's record) learns the account on success.

    The context holds the request's read connection, which authentication
    opened: the caller closes it with :func:`finish` once the answer is made.
    """
    reads = SharedReads(services.db)
    try:
        grant = await authenticate(reads.lend, authorization)
    except BaseException:
        await reads.close()
        raise
    facts = facts if facts is not None else RequestFacts()
    facts.account_id = grant.account_id
    return Context(
        db=services.db, settings=services.settings, grant=grant, now=services.clock(),
        reads=reads, request_id=request_id, facts=facts,
    )


async def still_granted(context: Context) -> None:
    """Check again that the request's token is live: :class:`InvalidCredentials` if not.

    For answers that outlive their first read (a streamed export): a token
    revoked meanwhile stops them at their next step.
    """
    async with context.read() as connection:
        grant = await grant_for_hash(connection, context.grant.token_hash)
    if grant is None:
        raise InvalidCredentials()


async def release(context: Context) -> None:
    """Give back the request's read connection while it waits on something else.

    A later read takes one again.
    """
    if context.reads is not None:
        await context.reads.close()


async def finish(context: Context | None) -> None:
    """End the request: give back its read connection and drop what its loaders hold.

    The loaders' caches hold the answers they read, and the loaders hold the
    context: left to the garbage collector, a streamed export's chunks would
    pile up until it came by.
    """
    if context is not None:
        await release(context)
        context.loaders.clear()
