"""What one request turned out to be, learnt along the way, for its log line and metrics.

The access middleware (``meterql.web.access``) puts an empty record in the
scope before routing; whoever learns something fills it in: authentication
the account, the GraphQL view's extension the operation, ingestion the
outcome of each batch. The middleware reads it once the answer is sent.
Nothing here is shown to clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.types import Scope

_SCOPE_KEY = "meterql_request_facts"


@dataclass(slots=True)
class RequestFacts:
    account_id: str | None = None
    # GraphQL only: the operation's name as sent or as its document names it
    # (None when anonymous), and its type; None when no document was parsed.
    operation_name: str | None = None
    operation_type: str | None = None
    operations: int = 0
    graphql_errors: bool = False
    # Whether the answer was a kept one (``meterql.web.answers``); None when
    # none could be (the cache is off, or the request is not one it keeps).
    answer_kept: bool | None = None
    # Ingestion: one outcome per batch ("stored" or the refusing error's code).
    batches: list[str] = field(default_factory=list)
    events_accepted: int = 0
    events_duplicate: int = 0

    def operation(self, name: str | None, kind: str, errors: bool) -> None:
        self.operations += 1
        if self.operations == 1:
            self.operation_name, self.operation_type = name, kind
        else:
            # A batched POST: one label for the lot, whatever it held.
            self.operation_name, self.operation_type = BATCH, "batch"
        self.graphql_errors = self.graphql_errors or errors

    def batch_stored(self, accepted: int, duplicates: int) -> None:
        self.batches.append(STORED)
        self.events_accepted += accepted
        self.events_duplicate += duplicates

    def batch_refused(self, code: str) -> None:
        self.batches.append(code.lower())


STORED = "stored"
BATCH = "<batch>"


def start(scope: Scope) -> RequestFacts:
    """A fresh record for the request ``scope`` belongs to (the middleware's job)."""
    facts = RequestFacts()
    scope.setdefault("state", {})[_SCOPE_KEY] = facts
    return facts


def request_facts(scope: Scope) -> RequestFacts:
    """The request's record; a detached one outside the middleware (nobody reads it)."""
    state = scope.get("state") or {}
    facts = state.get(_SCOPE_KEY)
    return facts if isinstance(facts, RequestFacts) else RequestFacts()
