"""HTTP answers for errors, shaped as the old FastAPI service wrote them."""

from __future__ import annotations

from starlette.responses import JSONResponse

from meterql.errors import AuthenticationError, InvalidInput, MeterqlError, http_status


def error_response(error: MeterqlError) -> JSONResponse:
    """``{"detail": ...}`` with the error's status; 401s also name the Bearer scheme."""
    status = http_status(error)
    detail: object = error.errors if isinstance(error, InvalidInput) and error.errors else (
        error.message
    )
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthenticationError) else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def internal_error_response() -> JSONResponse:
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
