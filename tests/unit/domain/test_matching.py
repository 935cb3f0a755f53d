"""Which integrations an event goes to: type, tenant hierarchy, activity, filter, ordering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from junctionbox.domain.events import StoredEvent
from junctionbox.domain.matching import (
    TenantChain,
    applies_to,
    candidates,
    filter_activation,
    ordering_key,
    run_filter,
)
from junctionbox.domain.outbound import StoredIntegration, parse_integration
from junctionbox.errors import ExpressionRuntimeError
from junctionbox.expr import compile_filter

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ORG, UNIT, OTHER_UNIT = 100, 101, 102


def integration(owner: int, ident: str = "int_1", **fields: Any) -> StoredIntegration:
    body = {"name": ident, "eventType": "order.created", "targetUrl": "https://x.example/h"}
    return StoredIntegration(
        id=ident,
        org_id=owner,
        version=1,
        integration=parse_integration({**body, **fields}),
        signing_keys=(),
        consecutive_failures=0,
        disabled_reason=None,
        disabled_at=None,
        created_by=None,
        created_at=NOW,
        updated_at=NOW,
    )


def event(data: bytes = b'{"total": 150, "customer": {"id": "c-9"}}', **fields: Any) -> StoredEvent:
    values: dict[str, Any] = {
        "org_id": UNIT,
        "stream": "default",
        "partition": 2,
        "offset": 7,
        "event_id": "evt_1",
        "source": "shop",
        "type": "order.created",
        "subject": "order-1",
        "time": None,
        "received_at": NOW,
        "partition_key": None,
        "data_content_type": "application/json",
        "data_schema": None,
        "extensions": {},
        "payload": data,
    }
    values.update(fields)
    return StoredEvent(**values)


UNIT_CHAIN = TenantChain(UNIT, ORG)
ORG_CHAIN = TenantChain(ORG)


def test_own_integrations_always_apply_whatever_their_scope() -> None:
    assert applies_to(integration(UNIT, scope="ENTITY_ONLY"), UNIT_CHAIN)
    assert applies_to(integration(ORG, scope="ENTITY_ONLY"), ORG_CHAIN)


def test_parent_integrations_apply_to_units_unless_entity_only_or_excluded() -> None:
    assert applies_to(integration(ORG), UNIT_CHAIN)
    assert not applies_to(integration(ORG, scope="ENTITY_ONLY"), UNIT_CHAIN)
    assert not applies_to(integration(ORG, excludedEntityRids=[UNIT]), UNIT_CHAIN)
    assert applies_to(integration(ORG, excludedEntityRids=[OTHER_UNIT]), UNIT_CHAIN)


def test_integrations_never_apply_upwards_sideways_or_across_tenants() -> None:
    assert not applies_to(integration(UNIT), ORG_CHAIN)  # a unit's, for the org's event
    assert not applies_to(integration(OTHER_UNIT), UNIT_CHAIN)  # a sibling's
    assert not applies_to(integration(200), UNIT_CHAIN)  # another organization's
    assert applies_to(integration(200), TenantChain(201, 200))  # but to its own units


@pytest.mark.parametrize(
    ("pattern", "matched"),
    [
        ("order.created", True),
        ("order.*", True),
        ("*", True),
        ("order.updated", False),
        ("ord.*", False),
        ("order.created.v2", False),
    ],
)
def test_event_type_patterns(pattern: str, matched: bool) -> None:
    found = candidates([integration(UNIT, eventType=pattern)], UNIT_CHAIN, "order.created")
    assert bool(found) is matched


def test_inactive_integrations_are_not_candidates_and_order_is_kept() -> None:
    first, off, last = (
        integration(ORG, "int_a"),
        integration(UNIT, "int_b", isActive=False),
        integration(UNIT, "int_c"),
    )
    assert [s.id for s in candidates([first, off, last], UNIT_CHAIN, "order.created")] == [
        "int_a",
        "int_c",
    ]


def test_filters_see_the_cloudevent_with_decoded_data() -> None:
    activation = filter_activation(event(extensions={"region": "eu"}))
    assert activation["data"] == {"total": 150, "customer": {"id": "c-9"}}
    assert (activation["type"], activation["source"], activation["subject"]) == (
        "order.created",
        "shop",
        "order-1",
    )
    assert (activation["orgid"], activation["region"], activation["jboffset"]) == (UNIT, "eu", 7)
    rich = compile_filter('event.data.total > 100 && event.region == "eu"')
    assert run_filter(rich.matches, activation).matched
    poor = compile_filter("event.data.total > 1000")
    assert run_filter(poor.matches, activation).matched is False


def test_non_json_and_broken_json_data_reach_filters_as_text() -> None:
    text = filter_activation(event(b"plain words", data_content_type="text/plain"))
    assert text["data"] == "plain words"
    broken = filter_activation(event(b'{"oops"'))
    assert broken["data"] == '{"oops"'
    empty = filter_activation(event(b""))
    assert "data" not in empty


def test_a_filter_that_fails_at_run_time_is_no_match_with_the_reason() -> None:
    missing = compile_filter("event.data.absent > 1")
    verdict = run_filter(missing.matches, filter_activation(event()))
    assert verdict.matched is False
    assert verdict.error is not None
    assert "absent" in verdict.error
    not_bool = compile_filter("event.data.total")
    assert run_filter(not_bool.matches, filter_activation(event())).error

    def explode(_: Any) -> bool:
        raise ExpressionRuntimeError("boom")

    assert run_filter(explode, {}).error == "boom"

    def crash(_: Any) -> bool:
        raise ZeroDivisionError("bug")

    assert "ZeroDivisionError" in (run_filter(crash, {}).error or "")


def test_ordering_keys_are_per_integration_and_value() -> None:
    activation = filter_activation(event())
    plain = integration(UNIT)
    assert ordering_key(plain, activation) is None
    by_subject = integration(UNIT, "int_s", ordering={"mode": "FIFO"})
    assert ordering_key(by_subject, activation) == "int_s:order-1"
    by_customer = integration(UNIT, "int_c", ordering={"mode": "FIFO", "key": "data.customer"})
    assert ordering_key(by_customer, activation) == 'int_c:{"id":"c-9"}'
    by_missing = integration(UNIT, "int_m", ordering={"mode": "FIFO", "key": "data.nope"})
    assert ordering_key(by_missing, activation) == "int_m:"
    long_value = filter_activation(event(subject="x" * 500))
    hashed = ordering_key(by_subject, long_value)
    assert hashed is not None
    assert hashed.startswith("int_s:#")
    assert len(hashed) <= 200
    assert hashed == ordering_key(by_subject, filter_activation(event(subject="x" * 500)))
