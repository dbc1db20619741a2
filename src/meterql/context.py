"""What resolvers see: the app's services, and the per-request context built from them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import strawberry

from meterql.auth import authenticate, require_scope
from meterql.config import Settings
from meterql.db.accounts import TokenGrant
from meterql.db.engine import Database
from meterql.windows import Clock


@dataclass(frozen=True, slots=True)
class Services:
    """Made once per app by ``create_app``; shared by every request."""

    settings: Settings
    db: Database
    schema: strawberry.Schema
    clock: Clock


@dataclass(frozen=True, slots=True)
class Context:
    """Made per request, after authentication; ``info.context`` in resolvers."""

    db: Database
    settings: Settings
    grant: TokenGrant
    # One instant per request, so every number in an answer agrees on "today".
    now: datetime

    @property
    def account_id(self) -> str:
        return self.grant.account_id

    def require(self, scope: str) -> Context:
        """This context, if its token has ``scope``; else :class:`PermissionDenied`."""
        require_scope(self.grant, scope)
        return self


async def authenticated_context(services: Services, authorization: str | None) -> Context:
    """Raises :class:`meterql.errors.AuthenticationError` without a live token."""
    grant = await authenticate(services.db, authorization)
    return Context(
        db=services.db, settings=services.settings, grant=grant, now=services.clock()
    )
