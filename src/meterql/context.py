"""What resolvers see: the app's services, and the per-request context built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import strawberry

from meterql import buckets, retention
from meterql.auth import authenticate, require_scope
from meterql.buckets import BucketPlan, Granularity, LocalRange
from meterql.config import Settings
from meterql.db.accounts import AccountState, TokenGrant, grant_for_hash
from meterql.db.engine import Database
from meterql.db.reads import Reads
from meterql.errors import InvalidCredentials
from meterql.loaders import Loaders
from meterql.points import PointBudget
from meterql.web.request_facts import RequestFacts
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
    """Made per request, after authentication; ``info.context`` in resolvers.

    A context holds no connection: every read takes one for its statement
    alone (``db/reads.py``), so nothing is held between statements, or while
    the request waits on its client.
    """

    db: Database
    settings: Settings
    grant: TokenGrant
    # One instant per request, so every number in an answer agrees on "today".
    now: datetime
    # The account's live subscriptions and hosting, read with the token in the
    # request's first round trip; None (a context made without one) reads
    # them on first need (``resolvers.batches.account_state``).
    state: AccountState | None = None
    # Named in masked errors and log lines (``meterql.web.request_ids``).
    request_id: str = ""
    # The request's record for its log line and metrics (``meterql.web.request_facts``).
    facts: RequestFacts = field(default_factory=RequestFacts)
    # DataLoaders of this request alone (``meterql.loaders``; the batch functions
    # are ``meterql.resolvers.batches``), made with it.
    loaders: Loaders[Context] = field(init=False, repr=False, compare=False)
    # Series points every ``usage`` answer of this request may still return
    # (``meterql.points``), from ``graphql_max_series_points``.
    points: PointBudget = field(init=False, repr=False, compare=False)

    # The buckets of each distinct ``usage`` range and grain asked in this request
    # (grain None: the range as one bucket).
    _plans: dict[tuple[LocalRange, Granularity | None], BucketPlan] = field(
        init=False, repr=False, compare=False
    )
    # Per ``usage`` field of the query (its operation and response path, list
    # indices left out), whether it selects its series.
    series_selected: dict[tuple[object, ...], bool] = field(
        init=False, repr=False, compare=False
    )
    # ``usage`` answers read ahead with their list, by (field node id, node
    # key), each taken by its node's resolver (``resolvers/usage.py``).
    read_ahead: dict[tuple[int, str], object] = field(init=False, repr=False, compare=False)

    @property
    def event_horizon(self) -> datetime | None:
        """The oldest instant an event may have to be accepted (raw-event retention)."""
        return retention.horizon(self.settings.raw_event_retention_days, self.now)

    def __post_init__(self) -> None:
        object.__setattr__(self, "loaders", Loaders(self))
        object.__setattr__(
            self, "points", PointBudget(self.settings.graphql_max_series_points)
        )
        object.__setattr__(self, "_plans", {})
        object.__setattr__(self, "series_selected", {})
        object.__setattr__(self, "read_ahead", {})

    def bucket_plan(self, local: LocalRange, granularity: Granularity | None) -> BucketPlan:
        """The range cut into buckets (``None``: one bucket, the whole range), once per
        request whatever the number of nodes asking."""
        key = (local, granularity)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = (
                buckets.whole(local) if granularity is None else buckets.plan(local, granularity)
            )
        return plan

    @property
    def account_id(self) -> str:
        return self.grant.account_id

    @property
    def reader(self) -> Reads:
        """Where this request's statements run (``db/reads.py``)."""
        return self.db.reads

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

    One round trip: the token, and with it the account's plan and hosting,
    which most answers need (``db/accounts.py``). ``facts`` (the request's
    record) learns the account on success.
    """
    session = await authenticate(services.db.reads, authorization)
    facts = facts if facts is not None else RequestFacts()
    facts.account_id = session.grant.account_id
    return Context(
        db=services.db, settings=services.settings, grant=session.grant,
        now=services.clock(), state=session.state, request_id=request_id, facts=facts,
    )


async def still_granted(context: Context) -> None:
    """Check again that the request's token is live: :class:`InvalidCredentials` if not.

    For answers that outlive their first read (a streamed export): a token
    revoked meanwhile stops them at their next step.
    """
    if await grant_for_hash(context.reader, context.grant.token_hash) is None:
        raise InvalidCredentials()


def finish(context: Context | None) -> None:
    """End the request: drop what its loaders hold.

    The loaders' caches hold the answers they read: a streamed export's
    chunks must not pile up in them until the request is over.
    """
    if context is not None:
        context.loaders.clear()
