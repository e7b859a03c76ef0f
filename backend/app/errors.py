"""Domain exceptions and the one handler that maps them to HTTP responses."""

from __future__ import annotations

import logging
import re

import duckdb
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of every domain error. ``status_code`` is the HTTP status it maps to."""

    status_code: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(ServiceError):
    """Bad input the client can fix."""

    status_code = 400


class Expired(ServiceError):
    """A connection handle or credential has expired or is unknown."""

    status_code = 401


class NotFound(ServiceError):
    """The named thing does not exist."""

    status_code = 404


class Timeout(ServiceError):
    """An upstream query or wait timed out."""

    status_code = 408


class Conflict(ServiceError):
    """The operation conflicts with one in progress."""

    status_code = 409


class PayloadTooLarge(ServiceError):
    """The request body, or the result it asks for, is over a configured size cap."""

    status_code = 413


class Unprocessable(ServiceError):
    """Semantically invalid request (validation); answered in FastAPI's 422 list form at ``loc``."""

    status_code = 422

    def __init__(self, message: str, loc: tuple[str, ...] = ("body",)) -> None:
        super().__init__(message)
        self.loc = loc


class TooManyRequests(ServiceError):
    """A resource cap (for example open database handles) is reached."""

    status_code = 429


class Upstream(ServiceError):
    """An outside system answered with an error."""

    status_code = 502


class Unavailable(ServiceError):
    """A component is not ready (syncing, not configured, down)."""

    status_code = 503


async def service_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Turn a ServiceError into ``{"detail": message}`` with its status."""
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        logger.warning("%s %s -> %s: %s", request.method, request.url.path, exc.status_code, exc.message)
    if isinstance(exc, Unprocessable):
        # 422 keeps FastAPI's validation-error list form (spec decision 1; the declared OpenAPI schema).
        item = {"type": "value_error", "loc": list(exc.loc), "msg": exc.message}
        return JSONResponse({"detail": [item]}, status_code=422)
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code)


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Log an unexpected exception with its traceback and answer a generic 500."""
    logger.exception("Unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


DATASET_CHANGED = (
    "The dataset changed while this request read it (deleted, or replaced by another load); send the request again"
)


async def catalog_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A table that vanished mid-request (a delete or a swap between two reads of one request) → 409.

    Requests resolve their dataset, then read its table; a concurrent delete can drop the table in
    between. Any other catalog error is unexpected (500).
    """
    text = str(exc)
    if isinstance(exc, duckdb.CatalogException) and re.search(r"(Table|View) with name \S+ does not exist", text):
        logger.warning("%s %s -> 409: %s", request.method, request.url.path, text.splitlines()[0])
        return JSONResponse({"detail": DATASET_CHANGED}, status_code=409)
    return await unexpected_error_handler(request, exc)


def register_error_handlers(app: FastAPI) -> None:
    """Install the ServiceError handler, the vanished-table handler and the catch-all."""
    app.add_exception_handler(ServiceError, service_error_handler)
    app.add_exception_handler(duckdb.CatalogException, catalog_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
