"""Which integrations an event goes to: pure rules, no I/O.

An event belongs to one entity (an organization or one of its units). An integration
applies to it when

1. it is active;
2. its ``eventType`` matches the event's type (exact, ``*``, or a prefix ``appointment.*``);
3. the tenant hierarchy allows it: an integration of the event's own entity always applies;
   one of the entity's *parent* organization applies to the unit's events unless its scope
   is ``ENTITY_ONLY`` or the unit's id is in its ``excludedEntityRids``. A unit's
   integrations never see its organization's (or its sibling units') events;
4. its content filter (CEL over the event, see :func:`filter_activation`) returns true. A
   filter that fails at run time (a missing key, a non-boolean result) counts as *no match*:
   the caller logs it, and the partition is never blocked by one bad filter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from junctionbox.domain.events import StoredEvent
from junctionbox.domain.outbound import (
    OrderingMode,
    Scope,
    StoredIntegration,
    event_type_matches,
)
from junctionbox.errors import JunctionboxError
from junctionbox.expr.paths import MISSING, PathError, parse_path

ORDERING_KEY_MAX: Final = 200  # the jobs.ordering_key column
_ORDERING_VALUE_MAX: Final = 120


@dataclass(frozen=True, slots=True)
class TenantChain:
    """The event's entity and, for a unit, its organization."""

    entity_id: int
    parent_id: int | None = None

    @property
    def ids(self) -> tuple[int, ...]:
        """Whose integrations may apply, nearest first."""
        return (self.entity_id,) if self.parent_id is None else (self.entity_id, self.parent_id)


def applies_to(stored: StoredIntegration, chain: TenantChain) -> bool:
    """Rule 3: whether the integration's owner and scope cover the event's entity."""
    if stored.org_id == chain.entity_id:
        return True
    if chain.parent_id is None or stored.org_id != chain.parent_id:
        return False
    integration = stored.integration
    if integration.scope is Scope.ENTITY_ONLY:
        return False
    return chain.entity_id not in integration.excluded_entity_rids


def candidates(
    integrations: Iterable[StoredIntegration], chain: TenantChain, event_type: str
) -> list[StoredIntegration]:
    """Rules 1-3: the integrations to evaluate the filter of, in the given order."""
    return [
        stored
        for stored in integrations
        if stored.is_active
        and event_type_matches(stored.integration.event_type, event_type)
        and applies_to(stored, chain)
    ]


def filter_activation(event: StoredEvent) -> dict[str, Any]:
    """What a content filter sees as ``event``: the CloudEvent (``id``, ``source``,
    ``type``, ``subject``, ``time``, extension attributes, ``jbstream``/``jbpartition``/
    ``jboffset``) with ``data`` decoded, plus ``orgid``, the event's entity. For example
    ``event.type == "order.created" && event.data.total > 100``."""
    activation = event.to_cloudevent()
    activation.pop("data_base64", None)
    activation.pop("data", None)
    if event.payload:
        activation["data"] = _decoded_data(event)
    activation["orgid"] = event.org_id
    return activation


def _decoded_data(event: StoredEvent) -> Any:
    try:
        return event.data()
    except orjson.JSONDecodeError:  # declared JSON but is not: let filters see the text
        return event.payload.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class FilterVerdict:
    matched: bool
    error: str | None = None  # why the filter could not decide (then ``matched`` is False)


def run_filter(
    matches: Callable[[Mapping[str, Any]], bool], activation: Mapping[str, Any]
) -> FilterVerdict:
    """Rule 4: evaluate a compiled filter; an error is a verdict of no match, not a raise."""
    try:
        return FilterVerdict(matches(activation) is True)
    except JunctionboxError as exc:
        return FilterVerdict(False, exc.message)
    except Exception as exc:  # an engine bug must not stop the dispatcher either
        return FilterVerdict(False, f"{type(exc).__name__}: {exc}")


def ordering_key(stored: StoredIntegration, activation: Mapping[str, Any]) -> str | None:
    """The job's FIFO key: ``{integration id}:{value at ordering.key}`` when the integration
    orders deliveries, else None. Events without the value share one key per integration
    (``{id}:``), so they stay in order among themselves. Long values are hashed so the key
    fits its column."""
    ordering = stored.integration.ordering
    if ordering.mode is not OrderingMode.FIFO or not ordering.key:
        return None
    value = _value_at(activation, ordering.key)
    text = "" if value is MISSING or value is None else _as_text(value)
    if len(text) > _ORDERING_VALUE_MAX:
        text = "#" + hashlib.sha256(text.encode()).hexdigest()[:40]
    return f"{stored.id}:{text}"[:ORDERING_KEY_MAX]


def _value_at(activation: Mapping[str, Any], path: str) -> Any:
    try:
        return parse_path(path).get(activation)
    except PathError:
        return MISSING


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
