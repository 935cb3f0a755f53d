"""The one error envelope, and the handlers that put every failure into it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from junctionbox.errors import FieldProblem, JunctionboxError, MalformedBodyError, ValidationError
from junctionbox.observability import context

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def envelope(
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "error": message,
        "code": code,
        "statusCode": status,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestId": context.current().request_id,
    }
    if details:
        body["details"] = details
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def error_response(exc: JunctionboxError) -> Response:
    details = [p.as_dict() for p in exc.problems] or None
    return envelope(exc.status, exc.code, exc.message, details=details, headers=exc.headers)


def internal_error_response() -> Response:
    return envelope(500, "INTERNAL_ERROR", "internal error")


def _validation_problems(exc: RequestValidationError) -> JunctionboxError:
    problems = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            position = error["loc"][-1] if len(error["loc"]) > 1 else 0
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            return MalformedBodyError(
                f"malformed JSON at position {position}: {reason}",
                problems=[FieldProblem(("body", position), str(reason))],
            )
        problems.append(FieldProblem(tuple(error["loc"]), error["msg"]))
    summary = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.message}" for p in problems[:5])
    return ValidationError(f"invalid request: {summary}", problems=problems)


async def _on_junctionbox_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, JunctionboxError)
    if exc.status >= 500:
        log.error("request failed: %s", exc.message, exc_info=exc.__cause__ or exc)
    return error_response(exc)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(_validation_problems(exc))


async def _on_http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "INTERNAL_ERROR")
    message = "route not found" if exc.status_code == 404 else str(exc.detail)
    return envelope(exc.status_code, code, message, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(JunctionboxError, _on_junctionbox_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
