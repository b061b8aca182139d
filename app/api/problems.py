"""Errors as RFC 9457 problem details (`application/problem+json`), each naming the field and the reason."""

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.api.deps import RateLimited, Unauthorized
from app.api.idempotency import IdempotencyInFlight
from app.api.jobs import JobConflict, JobNotFound, TooManyJobs
from app.api.usage import StorageLimitExceeded
from app.core.child_process import Busy, Overloaded
from app.db.no_space import is_no_space
from models.errors import SpecError
from models.specs import dotted_path, issue_reason

PROBLEM_JSON = "application/problem+json"


# RFC 9457 problem details; `errors` lists each invalid field of a 422. Written out (no $refs) so that it
# can sit inline under every response it describes.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "value": {}, "reason": {"type": "string"}},
            },
        },
    },
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route may answer with."""
    described = {
        400: "malformed request",
        401: "missing, unknown or revoked token",
        404: "no such object (or another owner's)",
        409: "conflicts with the object's state",
        413: "body over its cap",
        422: "invalid field(s); each is named in `errors`",
        429: "over a per-owner limit, too many 401s from one address, or too many dry runs or upload checks "
        "under way in the API process; see Retry-After",
        503: "database or broker unreachable",
        507: "the database's disk is full: writes are refused until space is freed, reads still work",
    }
    return {
        code: {"description": described[code], "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
        for code in codes
    }


class NotFound(LookupError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"no {what} with id {ident}")


class PayloadTooLarge(ValueError):
    pass


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(_finite(jsonable_encoder(body)), status_code=status, media_type=PROBLEM_JSON)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; an echoed bad value like that is shown as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _issues_response(issues: list[dict[str, Any]]) -> JSONResponse:
    detail = "; ".join(f"{i['field']}: {i['reason']}" for i in issues)
    return problem(422, "Invalid request", detail, errors=issues)


_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        body = error.body if isinstance(error.body, dict) else {}
        issues = []
        for err in error.errors():
            loc = tuple(err["loc"])
            where = loc[0] if loc else "body"
            path = dotted_path(body, loc[1:]) if where == "body" else ".".join(str(p) for p in loc[1:])
            issues.append(
                {
                    "field": path if where == "body" else f"{where}.{path}",
                    "value": err.get("input"),
                    "reason": issue_reason(err),
                }
            )
        return _issues_response(issues)

    @app.exception_handler(SpecError)
    async def _spec(request: Request, error: SpecError) -> JSONResponse:
        return _issues_response(
            [{"field": i.field, "value": i.value, "reason": i.reason} for i in error.issues]
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        response = problem(error.status_code, _TITLES.get(error.status_code, "Error"), str(error.detail))
        if error.status_code == 405:  # every method the path supports, not only those of one route
            methods = {
                m
                for route in request.app.router.routes
                if route.matches(request.scope)[0] != Match.NONE
                for m in getattr(route, "methods", ())
            }
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, error: Unauthorized) -> JSONResponse:
        response = problem(401, "Unauthorized", str(error))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RateLimited)
    async def _rate_limited(request: Request, error: RateLimited) -> JSONResponse:
        response = problem(429, "Too many requests", str(error))
        response.headers["Retry-After"] = str(int(error.retry_after))
        return response

    @app.exception_handler(JobNotFound)
    async def _job_missing(request: Request, error: JobNotFound) -> JSONResponse:
        return problem(404, "Not found", f"no job with id {error}")

    @app.exception_handler(NotFound)
    async def _missing(request: Request, error: NotFound) -> JSONResponse:
        return problem(404, "Not found", str(error))

    @app.exception_handler(JobConflict)
    async def _conflict(request: Request, error: JobConflict) -> JSONResponse:
        return problem(409, "Conflict", str(error))

    @app.exception_handler(IdempotencyInFlight)
    async def _in_flight(request: Request, error: IdempotencyInFlight) -> JSONResponse:
        return problem(409, "Conflict", str(error))

    @app.exception_handler(TooManyJobs)
    async def _too_many(request: Request, error: TooManyJobs) -> JSONResponse:
        response = problem(429, "Too many queued jobs", str(error))
        response.headers["Retry-After"] = "30"
        return response

    @app.exception_handler(Busy)
    async def _busy(request: Request, error: Busy) -> JSONResponse:
        response = problem(429, "Too many at once", str(error))
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, error: Overloaded) -> JSONResponse:
        response = problem(503, "Service overloaded", str(error))
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.exception_handler(StorageLimitExceeded)
    async def _over_storage(request: Request, error: StorageLimitExceeded) -> JSONResponse:
        return problem(
            413,
            "Storage limit reached",
            str(error),
            limit_bytes=error.limit,
            usage_bytes=error.usage,
            request_bytes=error.adding,
        )

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(request: Request, error: PayloadTooLarge) -> JSONResponse:
        return problem(413, "Payload too large", str(error))

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, error: OperationalError) -> JSONResponse:
        if is_no_space(error):
            return problem(
                507,
                "Insufficient storage",
                "no space left on the database's disk: writes are refused until an operator frees space; "
                "reads still work",
            )
        response = problem(503, "Service unavailable", "the database is unreachable; retry shortly")
        response.headers["Retry-After"] = "2"
        return response
