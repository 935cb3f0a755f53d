"""Structured logs: JSON lines in production, readable lines in development.

Every record carries the request context, and every message and field passes through the
redactor before it is written, so a secret that reaches a log call is still never written.
"""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

from junctionbox.domain.redaction import redact, redact_text
from junctionbox.observability import context
from junctionbox.observability.tracing import trace_ids

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


def _context_fields() -> dict[str, Any]:
    ctx = context.current()
    fields = {
        "request_id": ctx.request_id,
        "correlation_id": ctx.correlation_id,
        "org_id": ctx.org_id,
        "principal_id": ctx.principal_id,
    }
    ids = trace_ids()
    if ids is not None:
        fields["trace_id"], fields["span_id"] = ids
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
            **_context_fields(),
            **redact(_extra_fields(record)),
        }
        if record.exc_info:
            entry["exc"] = redact_text("".join(traceback.format_exception(*record.exc_info)))
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = {**_context_fields(), **redact(_extra_fields(record))}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{when} {record.levelname:<7} {record.name}: {redact_text(record.getMessage())}"
        line = f"{line}  {tail}" if tail else line
        if record.exc_info:
            line += "\n" + redact_text("".join(traceback.format_exception(*record.exc_info)))
        return line


def configure_logging(log_format: str, level: str, stream: Any = None) -> None:
    """Route every logger (ours, uvicorn's, SQLAlchemy's) through one redacting handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Our request middleware writes the access log, with the request id and tenant.
    logging.getLogger("uvicorn.access").disabled = True
