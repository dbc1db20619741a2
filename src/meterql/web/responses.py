"""HTTP answers for errors, shaped as the old FastAPI service wrote them."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from meterql.errors import (
    AuthenticationError,
    DatabaseUnavailable,
    InvalidInput,
    MeterqlError,
    PayloadTooLarge,
    RequestTimeout,
    http_status,
)

# What a 503 asks clients to wait before retrying: about one failover.
RETRY_AFTER_SECONDS = 5


def error_response(error: MeterqlError) -> JSONResponse:
    """``{"detail": ...}`` with the error's status; 401s also name the Bearer scheme."""
    status = http_status(error)
    detail: object = error.errors if isinstance(error, InvalidInput) and error.errors else (
        error.message
    )
    headers: dict[str, str] | None = None
    if isinstance(error, AuthenticationError):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(error, DatabaseUnavailable):
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    elif isinstance(error, PayloadTooLarge | RequestTimeout):
        # What is left of the body, if anything, is not read: the connection
        # cannot carry another request.
        headers = {"Connection": "close"}
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# nginx's word for a request whose client went away before its answer: what
# the log line and the metrics show; the client itself never sees it.
CLIENT_CLOSED_REQUEST = 499


def client_gone_response() -> Response:
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def internal_error_response(request_id: str = "") -> JSONResponse:
    """A bug's answer: FastAPI's words, and the id to find it in the log by."""
    body: dict[str, str] = {"detail": "Internal Server Error"}
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=500)
