"""Every error junctionbox raises on purpose, each with a stable ``code`` and HTTP status.

The API turns any of these into the error envelope ``{"error", "code", "statusCode",
"timestamp", "requestId"}``; anything else that escapes is an opaque 500. Library
exceptions are converted to one of these at the adapter boundary, keeping the cause
(``raise X(...) from exc``).

    JunctionboxError                      INTERNAL_ERROR      500
    ├── ConfigurationError                CONFIGURATION_ERROR 500   (raised at start-up)
    ├── ValidationError                   VALIDATION_ERROR    400
    │   ├── MalformedBodyError            VALIDATION_ERROR    400
    │   └── ExpressionCompileError        VALIDATION_ERROR    400
    ├── UnprocessableError                UNPROCESSABLE       422
    │   └── IdempotencyKeyReusedError     IDEMPOTENCY_KEY_REUSED 422
    ├── UnauthorizedError                 UNAUTHORIZED        401
    ├── ForbiddenError                    FORBIDDEN           403
    ├── NotFoundError                     NOT_FOUND           404
    ├── ConflictError                     CONFLICT            409
    ├── PayloadTooLargeError              PAYLOAD_TOO_LARGE   413
    ├── UnsupportedMediaTypeError         UNSUPPORTED_MEDIA_TYPE 415
    ├── RateLimitedError                  RATE_LIMITED        429
    ├── ExpressionRuntimeError            TRANSFORM_ERROR     422   (never retried)
    ├── UpstreamError                     BAD_GATEWAY         502
    ├── UpstreamTimeoutError              GATEWAY_TIMEOUT     504
    └── ServiceUnavailableError           SERVICE_UNAVAILABLE 503
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldProblem:
    """One failing location in a request: ``loc`` is the path, e.g. ``("body", "email")``."""

    loc: tuple[str | int, ...]
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "message": self.message}


class JunctionboxError(Exception):
    """An unexpected internal error."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        problems: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or self.code).strip().splitlines()[0]
        self.problems = tuple(problems)
        self.headers = dict(headers or {})
        super().__init__(self.message)


class ConfigurationError(JunctionboxError):
    """The configuration is invalid."""

    code = "CONFIGURATION_ERROR"


class ValidationError(JunctionboxError):
    """The request is invalid."""

    code = "VALIDATION_ERROR"
    status = 400


class MalformedBodyError(ValidationError):
    """The request body is not valid JSON."""


class ExpressionCompileError(ValidationError):
    """The expression does not compile."""


class UnprocessableError(JunctionboxError):
    """The request is well-formed but cannot be processed."""

    code = "UNPROCESSABLE"
    status = 422


class IdempotencyKeyReusedError(UnprocessableError):
    """This Idempotency-Key was already used with a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"


class UnauthorizedError(JunctionboxError):
    """Missing or invalid credentials."""

    code = "UNAUTHORIZED"
    status = 401


class ForbiddenError(JunctionboxError):
    """Insufficient permissions."""

    code = "FORBIDDEN"
    status = 403


class NotFoundError(JunctionboxError):
    """Resource not found."""

    code = "NOT_FOUND"
    status = 404


class ConflictError(JunctionboxError):
    """The request conflicts with the current state."""

    code = "CONFLICT"
    status = 409


class PayloadTooLargeError(JunctionboxError):
    """The request body is too large."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class UnsupportedMediaTypeError(JunctionboxError):
    """The request's content type is not one this endpoint reads."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415


class RateLimitedError(JunctionboxError):
    """Rate limit exceeded."""

    code = "RATE_LIMITED"
    status = 429


class ExpressionRuntimeError(JunctionboxError):
    """The transformation failed."""

    code = "TRANSFORM_ERROR"
    status = 422


class UpstreamError(JunctionboxError):
    """The upstream service failed."""

    code = "BAD_GATEWAY"
    status = 502


class UpstreamTimeoutError(JunctionboxError):
    """The upstream service did not answer in time."""

    code = "GATEWAY_TIMEOUT"
    status = 504


class ServiceUnavailableError(JunctionboxError):
    """A required service is unavailable."""

    code = "SERVICE_UNAVAILABLE"
    status = 503
