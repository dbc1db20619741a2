"""Every failure meterql expects, in one tree.

``MeterqlError``
  ``AuthenticationError``   401, the request has no usable credentials
    ``NotAuthenticated``     missing or malformed ``Authorization`` header
    ``InvalidCredentials``   unknown or revoked token
  ``PermissionDenied``      403, the token lacks a scope
  ``NotFound``              404
    ``InstanceNotFound``     an instance the account does not own (or nobody owns)
  ``InvalidInput``          422, a value failed validation; ``errors`` holds the details
  ``PayloadTooLarge``       413
  ``RequestTimeout``        408, the body did not arrive in time
  ``DatabaseUnavailable``   503, the store cannot be reached right now

Each class has a stable machine ``code``; GraphQL shows it as
``extensions.code`` and the REST layer maps it to a status with
:data:`HTTP_STATUS`. Anything that is not a ``MeterqlError`` is a bug: it is
logged and masked, never shown to a client.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MeterqlError(Exception):
    code: ClassVar[str] = "INTERNAL"
    default_message: ClassVar[str] = "Internal Server Error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    @property
    def extensions(self) -> dict[str, Any]:
        # graphql-core copies an original error's ``extensions`` into the
        # GraphQL error it reports, so clients see the code.
        return {"code": self.code}


class AuthenticationError(MeterqlError):
    code = "UNAUTHENTICATED"


class NotAuthenticated(AuthenticationError):
    default_message = "Not authenticated"


class InvalidCredentials(AuthenticationError):
    code = "INVALID_CREDENTIALS"
    default_message = "Invalid authentication credentials"


class PermissionDenied(MeterqlError):
    code = "FORBIDDEN"
    default_message = "Not enough permissions"


class NotFound(MeterqlError):
    code = "NOT_FOUND"
    default_message = "Not found"


class InstanceNotFound(NotFound):
    default_message = "Instance not found"


class InvalidInput(MeterqlError):
    """A value failed validation.

    ``errors`` carries pydantic-shaped entries (``type``, ``loc``, ``msg``,
    ``input``...) so the REST layer can answer FastAPI's 422 body unchanged.
    """

    code = "BAD_USER_INPUT"
    default_message = "Invalid input"

    def __init__(self, message: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors = errors or []

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, "errors": self.errors}


class PayloadTooLarge(MeterqlError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "Request entity too large"


class RequestTimeout(MeterqlError):
    code = "REQUEST_TIMEOUT"
    default_message = "Request body not received in time"


class DatabaseUnavailable(MeterqlError):
    code = "DATABASE_UNAVAILABLE"
    default_message = "Database unavailable"


# The one place an error code becomes an HTTP status.
HTTP_STATUS: dict[str, int] = {
    NotAuthenticated.code: 401,
    InvalidCredentials.code: 401,
    PermissionDenied.code: 403,
    NotFound.code: 404,
    PayloadTooLarge.code: 413,
    RequestTimeout.code: 408,
    InvalidInput.code: 422,
    DatabaseUnavailable.code: 503,
    MeterqlError.code: 500,
}


def http_status(error: MeterqlError | type[MeterqlError]) -> int:
    return HTTP_STATUS.get(error.code, 500)


def said(error: BaseException) -> str:
    """An exception as a log line names it: its message, or its type when it has none
    (a timeout's is empty)."""
    return str(error) or type(error).__name__
