"""Bearer tokens: ``Authorization`` header → the account and scopes it grants."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from meterql.db.accounts import TokenGrant, grant_for_token
from meterql.db.engine import AsyncConnection
from meterql.errors import InvalidCredentials, NotAuthenticated, PermissionDenied

# Longer than any token we issue by far; refuse before hashing megabytes.
MAX_TOKEN_LENGTH = 512


def bearer_token(authorization: str | None) -> str:
    """The token of a ``Bearer`` header, as FastAPI's ``HTTPBearer`` splits it."""
    if not authorization:
        raise NotAuthenticated()
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        raise NotAuthenticated()
    return credentials


async def authenticate(
    read: Callable[[], AbstractAsyncContextManager[AsyncConnection]], authorization: str | None
) -> TokenGrant:
    """The grant of the header's token, looked up on a connection from ``read()``."""
    token = bearer_token(authorization)
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidCredentials()
    async with read() as connection:
        grant = await grant_for_token(connection, token)
    if grant is None:
        raise InvalidCredentials()
    return grant


def require_scope(grant: TokenGrant, scope: str) -> None:
    if scope not in grant.scopes:
        raise PermissionDenied(f"This token lacks the '{scope}' scope")
