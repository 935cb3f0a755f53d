"""DELAYED and RECURRING deliveries: the occurrence lifecycle and /api/v1/scheduled-integrations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.integration.dispatch_helpers import (
    SCHEDULED,
    add_integration,
    delivery_jobs,
    dispatcher,
    finish,
    make_tenants,
    order,
    payload_of,
    publish_as,
    scheduled_rows,
)
from tests.support import World

from junctionbox.domain.delivery import (
    DeliveryOutcome,
    FinalState,
    Trigger,
    message_id,
)
from junctionbox.queue.jobs import JobState
from junctionbox.services.container import Services
from junctionbox.store.queries.scheduled_integrations import ScheduledRecord

RECURRING = {
    "schedulingMode": "RECURRING",
    "schedulingConfig": {"type": "INTERVAL", "intervalMs": 60_000, "maxOccurrences": 2},
}
DELAYED = {"schedulingMode": "DELAYED", "schedulingConfig": {"delayMs": 3_600_000}}
DELIVERED = DeliveryOutcome(FinalState.DELIVERED, 1)


@pytest.fixture
async def svc(services: Services) -> Services:
    await make_tenants(services)
    return services


async def by_occurrence(services: Services) -> dict[int, ScheduledRecord]:
    return {row.occurrence: row for row in await scheduled_rows(services)}


# --- the occurrence lifecycle (the delivery listener) ---


async def test_a_recurring_series_runs_to_its_max_occurrences(svc: Services) -> None:
    hook = await add_integration(svc, 100, "every-minute", **RECURRING)
    await publish_as(svc, 100, [order(1)])
    await dispatcher(svc).dispatch_pending()
    first = (await by_occurrence(svc))[0]
    assert first.job_id is not None
    await finish(svc, first.job_id, DELIVERED)
    rows = await by_occurrence(svc)
    assert rows[0].status == "COMPLETED"
    second = rows[1]
    assert (second.status, second.mode) == ("PENDING", "RECURRING")
    assert second.scheduled_for == first.scheduled_for + timedelta(minutes=1)
    assert second.recurring_config == first.recurring_config
    (job,) = [j for j in await delivery_jobs(svc) if j.id == second.job_id]
    payload = payload_of(job)
    expected = message_id(100, "shop", "ord-1", hook.id, 0, 1)
    assert (payload.message_id, payload.scheduled_id, payload.trigger) == (
        expected,
        second.id,
        Trigger.SCHEDULED,
    )
    assert (
        payload.message_id
        != payload_of(next(j for j in await delivery_jobs(svc) if j.id == first.job_id)).message_id
    )
    assert (job.run_at, job.dedupe_key, job.max_attempts) == (
        second.scheduled_for,
        f"dlv:{expected}",
        5,
    )
    await finish(svc, second.job_id or "", DELIVERED)
    rows = await by_occurrence(svc)
    assert [rows[n].status for n in sorted(rows)] == ["COMPLETED", "COMPLETED"]  # max 2


async def test_a_dead_lettered_occurrence_fails_the_series_goes_on_and_a_redrive_completes_it(
    svc: Services,
) -> None:
    await add_integration(svc, 100, "every-minute", **RECURRING)
    await publish_as(svc, 100, [order(1)])
    await dispatcher(svc).dispatch_pending()
    first = (await by_occurrence(svc))[0]
    failed = DeliveryOutcome(FinalState.DEAD_LETTERED, 4, error="HTTP 503")
    await finish(svc, first.job_id or "", failed)
    rows = await by_occurrence(svc)
    assert (rows[0].status, rows[0].last_error) == ("FAILED", "HTTP 503")
    assert rows[1].status == "PENDING"
    # The DLQ redrives the failed occurrence later, and it gets through:
    redrive = payload_of(next(j for j in await delivery_jobs(svc) if j.id == first.job_id))
    async with svc.db.write() as conn:
        await svc.schedules.on_final(conn, redrive, DELIVERED)
        await svc.schedules.on_final(conn, redrive, DELIVERED)  # told twice: no harm
    rows = await by_occurrence(svc)
    assert (rows[0].status, rows[0].last_error) == ("COMPLETED", None)
    assert len(rows) == 2  # no extra occurrence from the redrive


@pytest.mark.parametrize(
    ("state", "status"),
    [(FinalState.SKIPPED, "CANCELLED"), (FinalState.DISABLED, "FAILED")],
)
async def test_a_series_ends_when_its_integration_is_off(
    svc: Services, state: FinalState, status: str
) -> None:
    await add_integration(svc, 100, "every-minute", **RECURRING)
    await publish_as(svc, 100, [order(1)])
    await dispatcher(svc).dispatch_pending()
    first = (await by_occurrence(svc))[0]
    await finish(svc, first.job_id or "", DeliveryOutcome(state, 1, error="integration off"))
    rows = await by_occurrence(svc)
    assert list(rows) == [0]
    assert rows[0].status == status
    if status == "CANCELLED":
        assert rows[0].cancellation_info is not None
        assert rows[0].cancellation_info["cancelledBy"] == "system"


async def test_a_delayed_delivery_completes_once_and_other_jobs_are_ignored(
    svc: Services,
) -> None:
    await add_integration(svc, 100, "later", **DELAYED)
    await add_integration(svc, 100, "now")
    await publish_as(svc, 100, [order(1)])
    await dispatcher(svc).dispatch_pending()
    (row,) = await scheduled_rows(svc)
    immediate = next(j for j in await delivery_jobs(svc) if j.id != row.job_id)
    async with svc.db.write() as conn:  # not a scheduled delivery: nothing to record
        await svc.schedules.on_final(conn, payload_of(immediate), DELIVERED)
    await finish(svc, row.job_id or "", DELIVERED)
    (row,) = await scheduled_rows(svc)
    assert row.status == "COMPLETED"


# --- the API ---


async def scheduled_world(world: World) -> dict[str, str]:
    """Delayed integrations for both tenants and one occurrence each for 100, 101 and 201."""
    svc = world.services
    hooks = {
        "a": (await add_integration(svc, 100, "later-a", **DELAYED)).id,
        "a2": (await add_integration(svc, 100, "later-a2", eventType="invoice.*", **DELAYED)).id,
        "b": (await add_integration(svc, 200, "later-b", **DELAYED)).id,
    }
    await publish_as(svc, 100, [order(1), {"type": "invoice.sent", "data": {}, "id": "inv-1"}])
    await publish_as(svc, 101, [order(2)])
    await publish_as(svc, 201, [order(3)])
    await dispatcher(svc).dispatch_pending()
    return hooks


async def test_list_filter_and_page_what_the_tenant_may_see(world: World) -> None:
    hooks = await scheduled_world(world)
    http, user_a = world.client, world.headers["user_a"]
    everything = (await http.get(SCHEDULED, headers=user_a)).json()
    assert everything["total"] == 3  # the organization sees its unit's occurrences too
    assert {i["orgId"] for i in everything["scheduledIntegrations"]} == {100, 101}
    item = everything["scheduledIntegrations"][0]
    assert item["status"] == "PENDING"
    assert item["schedulingMode"] == "DELAYED"
    assert item["messageId"] == item["payload"]["messageId"]
    unit = (await http.get(f"{SCHEDULED}?orgId=101", headers=user_a)).json()
    assert [i["orgId"] for i in unit["scheduledIntegrations"]] == [101]
    filtered = await http.get(
        SCHEDULED, params={"integrationId": hooks["a2"], "status": "PENDING"}, headers=user_a
    )
    assert [i["originalEventId"] for i in filtered.json()["scheduledIntegrations"]] == ["inv-1"]
    typed = await http.get(SCHEDULED, params={"eventType": "order.created"}, headers=user_a)
    assert typed.json()["total"] == 2
    paged = (await http.get(SCHEDULED, params={"limit": 2, "page": 2}, headers=user_a)).json()
    assert (len(paged["scheduledIntegrations"]), paged["total"], paged["hasMore"]) == (1, 3, False)
    soon = (await http.get(SCHEDULED, params={"endDate": "2000-01-01"}, headers=user_a)).json()
    assert soon["total"] == 0
    done = (await http.get(SCHEDULED, params={"status": "COMPLETED"}, headers=user_a)).json()
    assert done["total"] == 0
    bad = await http.get(SCHEDULED, params={"status": "LATER"}, headers=user_a)
    assert bad.status_code == 400
    theirs = (await http.get(SCHEDULED, headers=world.headers["key_b"])).json()
    assert [i["integrationId"] for i in theirs["scheduledIntegrations"]] == [hooks["b"]]


async def test_get_one_and_never_another_tenants(world: World) -> None:
    await scheduled_world(world)
    http = world.client
    ours = (await http.get(SCHEDULED, headers=world.headers["user_a"])).json()
    theirs = (await http.get(SCHEDULED, headers=world.headers["user_b"])).json()
    our_id = next(i["id"] for i in ours["scheduledIntegrations"] if i["orgId"] == 100)
    their_id = theirs["scheduledIntegrations"][0]["id"]
    found = await http.get(f"{SCHEDULED}/{our_id}", headers=world.headers["key_a"])
    assert found.status_code == 200
    assert found.json()["id"] == our_id
    for path in (f"{SCHEDULED}/{their_id}", f"{SCHEDULED}/{their_id}/cancel"):
        method = "GET" if path.endswith(their_id) else "POST"
        hidden = await http.request(method, path, headers=world.headers["user_a"])
        assert hidden.status_code == 404, path
    as_other_org = await http.get(
        f"{SCHEDULED}/{our_id}?orgId=200", headers=world.headers["user_a"]
    )
    assert as_other_org.status_code == 404
    # A unit does not see its organization's occurrences.
    unit_view = await http.get(f"{SCHEDULED}/{our_id}?orgId=101", headers=world.headers["user_a"])
    assert unit_view.status_code == 404


async def test_cancel_one_cancels_its_job(world: World) -> None:
    await scheduled_world(world)
    svc, http, user_a = world.services, world.client, world.headers["user_a"]
    item = (await http.get(SCHEDULED, headers=user_a)).json()["scheduledIntegrations"][0]
    cancelled = await http.post(
        f"{SCHEDULED}/{item['id']}/cancel", json={"reason": "customer left"}, headers=user_a
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "CANCELLED"
    assert body["cancellationInfo"]["reason"] == "customer left"
    assert body["cancellationInfo"]["cancelledBy"] == "user-a@example.com"
    job = await svc.queue.get(item["jobId"])
    assert job is not None
    assert job.state is JobState.CANCELLED
    again = await http.post(f"{SCHEDULED}/{item['id']}/cancel", headers=user_a)
    assert again.status_code == 409
    too_long = await http.post(
        f"{SCHEDULED}/{item['id']}/cancel", json={"reason": "x" * 501}, headers=user_a
    )
    assert too_long.status_code == 400


async def test_an_occurrence_that_already_ran_cannot_be_cancelled(world: World) -> None:
    await scheduled_world(world)
    svc, http, user_a = world.services, world.client, world.headers["user_a"]
    item = (await http.get(SCHEDULED, headers=user_a)).json()["scheduledIntegrations"][0]
    await finish(svc, item["jobId"], DELIVERED)
    refused = await http.post(f"{SCHEDULED}/{item['id']}/cancel", headers=user_a)
    assert refused.status_code == 409
    assert "COMPLETED" in refused.json()["error"]


async def test_cancel_every_pending_occurrence_of_an_integration(world: World) -> None:
    hooks = await scheduled_world(world)
    svc, http = world.services, world.client
    response = await http.post(
        f"{SCHEDULED}/cancel-pending",
        json={"integrationId": hooks["a"], "reason": "endpoint retired"},
        headers=world.headers["key_a"],
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"cancelled": 2, "notCancelled": 0, "remaining": 0}
    rows = {(r.integration_id, r.org_id): r for r in await scheduled_rows(svc)}
    assert rows[(hooks["a"], 100)].status == rows[(hooks["a"], 101)].status == "CANCELLED"
    assert rows[(hooks["a2"], 100)].status == "PENDING"
    assert rows[(hooks["b"], 201)].status == "PENDING"
    other = await http.post(
        f"{SCHEDULED}/cancel-pending",
        json={"integrationId": hooks["b"]},
        headers=world.headers["key_a"],
    )
    assert other.json()["cancelled"] == 0  # another tenant's: nothing visible to cancel
    missing = await http.post(
        f"{SCHEDULED}/cancel-pending", json={"reason": "x"}, headers=world.headers["key_a"]
    )
    assert missing.status_code == 400
