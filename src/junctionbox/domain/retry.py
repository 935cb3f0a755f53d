"""Retry policy, outcome classification and the retry-or-dead-letter decision.

Pure rules, no I/O: the caller injects ``now`` (epoch seconds) and a uniform random value
in ``[0, 1)``, so a schedule is reproducible in tests and computable inside a database
transaction.

Attempts are counted from 1: ``attempts_made`` is how many sends have already happened,
including the first one. A policy with ``max_retries=3`` therefore allows 4 sends in all;
the delay before retry number ``k`` (k = 1, 2, ...) is ``next_delay(k - 1, r)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import MappingProxyType

from junctionbox.errors import ValidationError

# A hostile or buggy server may answer ``Retry-After: 31536000``; we honour the header but
# never park a delivery for more than an hour on its word (the job stays claimable and the
# DLQ worker and manual redrive remain available for longer outages).
MAX_RETRY_AFTER_SECONDS = 3600.0

_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with additive jitter, capped.

    Defaults are seed 003's delivery/DLQ strategy: base 1 s, ``min(base * 2^attempt, 5 s)``,
    3 retries, jitter 20 %. The seeds' code adds ``delay * jitter * random()``, so the jitter
    only lengthens a delay: the longest possible wait is ``max_delay * (1 + jitter_factor)``.
    """

    max_retries: int = 3
    base_delay: float = 1.0
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter_factor: float = 0.2

    def __post_init__(self) -> None:
        # Policies come from integration configs (user input), hence ValidationError.
        if self.max_retries < 0:
            raise ValidationError("max_retries must be >= 0")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValidationError("need 0 < base_delay <= max_delay")
        if not math.isfinite(self.max_delay):
            raise ValidationError("max_delay must be finite")
        if self.multiplier < 1:
            raise ValidationError("multiplier must be >= 1")
        if not 0 <= self.jitter_factor <= 1:
            raise ValidationError("jitter_factor must be within [0, 1]")

    @property
    def longest_delay(self) -> float:
        """Upper bound of :meth:`next_delay`, for schedulers and lease sizing."""
        return self.max_delay * (1 + self.jitter_factor)

    def next_delay(self, attempt: int, random_value: float) -> float:
        """Seconds to wait before retry ``attempt + 1`` (``attempt`` is 0-based).

        ``random_value`` is a uniform draw from ``[0, 1]`` supplied by the caller.
        """
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        if not 0 <= random_value <= 1:
            raise ValueError("random_value must be within [0, 1]")
        return self._capped(attempt) * (1 + self.jitter_factor * random_value)

    def _capped(self, attempt: int) -> float:
        try:
            raw = self.base_delay * self.multiplier**attempt
        except OverflowError:  # huge attempt counts: the cap wins anyway
            return self.max_delay
        return min(raw, self.max_delay)


# Seed 001, "Retry Configuration by Integration Type" (milliseconds there, seconds here).
RETRY_PRESETS: Mapping[str, RetryPolicy] = MappingProxyType(
    {
        "default": RetryPolicy(),
        "salesSystem": RetryPolicy(3, 1.0, 30.0, 2.0, 0.1),
        "erpSystem": RetryPolicy(5, 2.0, 60.0, 2.0, 0.2),
        "eSignature": RetryPolicy(3, 1.0, 30.0, 2.0, 0.1),
        "communicationGateway": RetryPolicy(5, 0.5, 10.0, 2.0, 0.15),
    }
)


class Decision(StrEnum):
    """What one attempt's outcome means for the delivery."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"  # transient: try again later
    FAIL = "FAIL"  # permanent for this message: retrying cannot help
    DISABLE = "DISABLE"  # the destination asked us to stop (410 Gone)


class ErrorCategory(StrEnum):
    """``errorCategory`` of delivery and execution logs (seed 001's classifier names)."""

    NETWORK_ERROR = "NETWORK_ERROR"
    TIMEOUT = "TIMEOUT"
    SERVER_ERROR = "SERVER_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    CLIENT_ERROR = "CLIENT_ERROR"
    REDIRECT = "REDIRECT"
    GONE = "GONE"
    # Never returned by classify(): the worker logs it when the breaker refuses a send.
    # No request went out, so the job is rescheduled without spending a retry.
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    INVALID_RESPONSE = "INVALID_RESPONSE"


class NetworkErrorKind(StrEnum):
    """Failures before any HTTP status arrived; values are the familiar errno names."""

    TIMEOUT = "ETIMEDOUT"
    CONNECTION_REFUSED = "ECONNREFUSED"
    DNS = "ENOTFOUND"
    CONNECTION_RESET = "ECONNRESET"
    CONNECTION_ABORTED = "ECONNABORTED"
    TLS = "TLS_ERROR"


@dataclass(frozen=True)
class Classification:
    """The verdict on one attempt; ``retry_after`` is the server's requested delay, if any."""

    decision: Decision
    category: ErrorCategory | None = None
    retry_after: float | None = None


def classify(
    outcome: int | NetworkErrorKind,
    *,
    now: float,
    retry_after: str | None = None,
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
) -> Classification:
    """Classify an HTTP status or a network failure (Standard Webhooks status etiquette).

    Retry-After is kept only for retryable outcomes: it is advice about when to come back.
    """
    if isinstance(outcome, NetworkErrorKind):
        timed_out = outcome is NetworkErrorKind.TIMEOUT
        network = ErrorCategory.TIMEOUT if timed_out else ErrorCategory.NETWORK_ERROR
        return Classification(Decision.RETRY, network)
    decision, category = _classify_status(outcome)
    if decision is not Decision.RETRY or retry_after is None:
        return Classification(decision, category)
    delay = parse_retry_after(retry_after, now, max_seconds=max_retry_after)
    return Classification(decision, category, delay)


def _classify_status(status: int) -> tuple[Decision, ErrorCategory | None]:
    if 200 <= status <= 299:
        return Decision.SUCCESS, None
    if status == 408:  # the server timed out waiting for us: transient
        return Decision.RETRY, ErrorCategory.TIMEOUT
    if status == 429:
        return Decision.RETRY, ErrorCategory.RATE_LIMITED
    if status == 410:
        return Decision.DISABLE, ErrorCategory.GONE
    if 500 <= status <= 599:
        return Decision.RETRY, ErrorCategory.SERVER_ERROR
    if 400 <= status <= 499:
        return Decision.FAIL, ErrorCategory.CLIENT_ERROR
    if 300 <= status <= 399:
        # Redirects are never followed: the integration's URL must be fixed instead.
        return Decision.FAIL, ErrorCategory.REDIRECT
    # 1xx as a final status, or outside 100-599: the peer does not speak HTTP properly.
    return Decision.FAIL, ErrorCategory.INVALID_RESPONSE


def parse_retry_after(
    value: str, now: float, *, max_seconds: float = MAX_RETRY_AFTER_SECONDS
) -> float | None:
    """Seconds to wait per a ``Retry-After`` value, or None when it cannot be understood.

    Accepts delta-seconds (a fractional part is tolerated) and HTTP-dates (IMF-fixdate,
    RFC 850, asctime; a date without zone is taken as GMT, as RFC 9110 requires). Dates in
    the past give 0; the result is capped at ``max_seconds``.
    """
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        when = _parse_http_date(text)
        if when is None:
            return None
        seconds = max(0.0, when - now)
    return min(seconds, max_seconds)


def _parse_http_date(text: str) -> float | None:
    try:
        parsed = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def retries_left(policy: RetryPolicy, attempts_made: int) -> bool:
    """True when another send is allowed after ``attempts_made`` sends (the first included)."""
    if attempts_made < 1:
        raise ValueError("attempts_made counts the first send, so it is >= 1")
    return attempts_made <= policy.max_retries


class NextAction(StrEnum):
    """What the worker does with the job after recording an attempt."""

    DELIVERED = "DELIVERED"
    RETRY = "RETRY"
    DEAD_LETTER = "DEAD_LETTER"  # exhausted, or a permanent failure kept for audit
    DISABLE = "DISABLE"  # dead-letter this message and disable the integration


@dataclass(frozen=True)
class NextStep:
    """The plan after an attempt; ``retry_at`` is set only for ``RETRY``."""

    action: NextAction
    retry_at: float | None = None


def plan_next(
    policy: RetryPolicy,
    attempts_made: int,
    outcome: Classification,
    *,
    now: float,
    random_value: float,
) -> NextStep:
    """Decide between retrying (and when), dead-lettering, or disabling.

    A server's Retry-After replaces the computed backoff when present, even if longer than
    ``max_delay`` (it was already capped when parsed).
    """
    if outcome.decision is Decision.SUCCESS:
        return NextStep(NextAction.DELIVERED)
    if outcome.decision is Decision.DISABLE:
        return NextStep(NextAction.DISABLE)
    if outcome.decision is Decision.FAIL or not retries_left(policy, attempts_made):
        return NextStep(NextAction.DEAD_LETTER)
    delay = outcome.retry_after
    if delay is None:
        delay = policy.next_delay(attempts_made - 1, random_value)
    return NextStep(NextAction.RETRY, now + delay)
