"""Bearer tokens: ``Authorization`` header → the account and scopes it grants."""

from __future__ import annotations

from meterql.db.accounts import Session, TokenGrant, session
from meterql.db.reads import Reader
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


async def authenticate(reader: Reader, authorization: str | None) -> Session:
    """The session of the header's token (its grant and account state), in one read."""
    token = bearer_token(authorization)
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidCredentials()
    found = await session(reader, token)
    if found is None:
        raise InvalidCredentials()
    return found


def require_scope(grant: TokenGrant, scope: str) -> None:
    if scope not in grant.scopes:
        raise PermissionDenied(f"This token lacks the '{scope}' scope")
