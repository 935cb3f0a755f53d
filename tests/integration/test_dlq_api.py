"""``/api/v1/dlq`` on SQLite and PostgreSQL: listing, trace, retries, deletion, tenancy.

Entries are created as the delivery worker creates them, through ``DlqService.on_final``.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.dlq_helpers import (
    Clock,
    add_log,
    dead_letter,
    delete_integration,
    delivery_job,
    entry,
    force,
    make_integration,
    outcome,
    set_active,
    use_clock,
)
from tests.support import World

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    DlqStatus,
    Trigger,
)
from junctionbox.domain.paging import PageRequest
from junctionbox.services.dlq import redrive_job, redrive_key
from junctionbox.store.queries.dlq import DlqRecord

URL = "/api/v1/dlq"


@pytest.fixture
def clock(world: World) -> Clock:
    clock = Clock()
    use_clock(world.services, clock)
    return clock


@pytest.fixture
async def entries(world: World, clock: Clock) -> dict[str, DlqRecord]:
    """Org A: three entries (one of its unit's events) on two integrations; org B: one."""
    svc = world.services
    hook = await make_integration(svc, 100, "hook-a")
    crm = await make_integration(svc, 100, "crm-a")
    other = await make_integration(svc, 200, "hook-b")
    made = {}
    cases = [
        ("unit", delivery_job(101, hook, "evt-1"), outcome()),
        ("paid", delivery_job(100, crm, "evt-2", "order.paid"), outcome(integration_name="crm-a")),
        ("refused", delivery_job(100, hook, "evt-3"), outcome(error="connection refused")),
        ("b", delivery_job(200, other, "evt-4"), outcome()),
    ]
    for name, job, result in cases:
        clock.advance(60)
        made[name] = await dead_letter(svc, job, result)
    return made


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["entries"]]


async def _get(world: World, path: str, caller: str = "user_a", **params: Any) -> Any:
    response = await world.client.get(path, params=params, headers=world.headers[caller])
    assert response.status_code == 200, response.text
    return response.json()


# --- reading ---


async def test_list_is_newest_first_with_filters(
    world: World, entries: dict[str, DlqRecord]
) -> None:
    unit, paid, refused = entries["unit"], entries["paid"], entries["refused"]
    body = await _get(world, URL, orgId=100)
    assert _ids(body) == [refused.id, paid.id, unit.id]  # the organization sees its unit's too
    assert (body["total"], body["page"], body["hasMore"]) == (3, 1, False)
    first = body["entries"][0]
    assert first["deliveryId"] == refused.delivery_id
    assert first["status"] == "PENDING_RETRY"
    assert (first["attemptCount"], first["maxRetries"], first["deliveryAttempts"]) == (0, 3, 4)
    assert first["nextRetryAt"] is not None
    assert "originalPayload" not in first  # in the detail only
    assert _ids(await _get(world, URL, orgId=101)) == [unit.id]
    paged = await _get(world, URL, orgId=100, limit=2, page=1)
    assert (len(paged["entries"]), paged["total"], paged["hasMore"]) == (2, 3, True)
    filters: list[tuple[dict[str, Any], list[str]]] = [
        ({"status": "PENDING_RETRY"}, [refused.id, paid.id, unit.id]),
        ({"status": "ABANDONED"}, []),
        ({"integrationId": paid.integration_id}, [paid.id]),
        ({"eventType": "order.paid"}, [paid.id]),
        ({"search": "REFUSED"}, [refused.id]),
        ({"search": "evt-1"}, [unit.id]),
        ({"search": "crm-a"}, [paid.id]),
        ({"search": "100%_"}, []),
        ({"from": paid.created_at.isoformat()}, [refused.id, paid.id]),
        ({"to": paid.created_at.isoformat()}, [unit.id]),
        (
            {"from": unit.created_at.isoformat(), "to": refused.created_at.isoformat()},
            [paid.id, unit.id],
        ),
    ]
    for params, expected in filters:
        assert _ids(await _get(world, URL, orgId=100, **params)) == expected, params


async def test_bad_filters_are_400(world: World, entries: dict[str, DlqRecord]) -> None:
    for params in ({"status": "LOST"}, {"from": "yesterday"}, {"limit": 0}):
        response = await world.client.get(
            URL, params={"orgId": 100, **params}, headers=world.headers["user_a"]
        )
        assert response.status_code == 400, params
        assert response.json()["code"] == "VALIDATION_ERROR"


async def test_stats_count_by_status(world: World, entries: dict[str, DlqRecord]) -> None:
    await force(world.services, entries["paid"].id, status="ABANDONED")
    body = await _get(world, f"{URL}/stats", orgId=100)
    assert body == {
        "total": 3,
        "byStatus": {"PENDING_RETRY": 2, "RETRYING": 0, "ABANDONED": 1},
    }
    unit = await _get(world, f"{URL}/stats", "key_a", orgId=101)
    assert unit["byStatus"]["PENDING_RETRY"] == 1
    assert (await _get(world, f"{URL}/stats", "user_b", orgId=200))["total"] == 1


async def test_detail_shows_the_delivery_trace(
    world: World, entries: dict[str, DlqRecord], clock: Clock
) -> None:
    svc = world.services
    found = entries["unit"]
    job = DeliveryJob.from_payload(found.job)
    steps = [{"step": "request", "status": "ok"}, {"step": "response", "status": 503}]
    older = await add_log(svc, job, created_at=clock.advance(1), response_status=500)
    newer = await add_log(
        svc,
        job,
        created_at=clock.advance(1),
        response_status=503,
        steps=steps,
        request_headers={"authorization": "Bearer sk_live_0123456789abcdef", "x-a": "1"},
        request_body='{"orderId": 42}',
        error_message="HTTP 503",
        error_category="SERVER_ERROR",
    )
    await add_log(svc, delivery_job(101, found.integration_id, "evt-other"), created_at=clock.now)
    body = await _get(world, f"{URL}/{found.id}", orgId=100)
    assert body["id"] == found.id
    assert body["originalPayload"] == '{"orderId": 42}'
    assert body["job"]["messageId"] == found.delivery_id
    assert [attempt["id"] for attempt in body["trace"]] == [newer, older]
    latest = body["trace"][0]
    assert latest["steps"] == steps
    assert latest["responseStatus"] == 503
    assert latest["requestHeaders"] == {"authorization": "***", "x-a": "1"}
    assert latest["triggerType"] == "EVENT"
    # The unit sees its own entry too; another id is 404.
    assert (await _get(world, f"{URL}/{found.id}", orgId=101))["id"] == found.id
    missing = await world.client.get(
        f"{URL}/dlq_missing", params={"orgId": 100}, headers=world.headers["user_a"]
    )
    assert missing.status_code == 404


# --- retrying ---


async def _retry(world: World, entry_id: str, caller: str = "user_a", org: int = 100) -> Any:
    return await world.client.post(
        f"{URL}/{entry_id}/retry", params={"orgId": org}, headers=world.headers[caller]
    )


async def test_manual_retry_enqueues_the_same_delivery_once(
    world: World, entries: dict[str, DlqRecord]
) -> None:
    svc = world.services
    target = entries["unit"]
    response = await _retry(world, target.id)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["id"], body["status"], body["attempt"], body["trigger"]) == (
        target.id,
        "RETRYING",
        1,
        "MANUAL",
    )
    job = await svc.queue.get(body["jobId"])
    assert job is not None
    assert (job.kind, job.queue, job.org_id, job.max_attempts) == (
        DELIVERY_JOB_KIND,
        DELIVERY_QUEUE,
        101,
        1,
    )
    assert job.dedupe_key == redrive_key(target.id, 1)
    sent = DeliveryJob.from_payload(job.payload)
    assert sent.message_id == target.delivery_id  # the same webhook-id
    assert (sent.trigger, sent.dlq_entry_id) == (Trigger.MANUAL, target.id)
    assert (sent.event, sent.event_id) == (DeliveryJob.from_payload(target.job).event, "evt-1")
    current = await entry(svc, target.id)
    assert current is not None
    assert current.status == DlqStatus.RETRYING
    # A double click: 409, and the same redrive cannot be enqueued twice anyway.
    again = await _retry(world, target.id)
    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT"
    assert await svc.queue.enqueue_now([redrive_job(target, Trigger.MANUAL)]) == [body["jobId"]]
    assert (await svc.queue.list(None, PageRequest())).total == 1
    audit = await svc.audit.list(PageRequest(), org_ids=[101], action="dlq.retry")
    assert [record.resource_id for record in audit.items] == [target.id]


async def test_abandoned_entries_can_be_retried_but_not_of_disabled_integrations(
    world: World, entries: dict[str, DlqRecord]
) -> None:
    svc = world.services
    abandoned = entries["refused"]
    await force(svc, abandoned.id, status="ABANDONED", attempt_count=3, next_retry_at=None)
    response = await _retry(world, abandoned.id, "key_a")
    assert response.status_code == 202, response.text
    assert response.json()["attempt"] == 4
    job = await svc.queue.get(response.json()["jobId"])
    assert job is not None
    assert job.dedupe_key == redrive_key(abandoned.id, 4)

    paid = entries["paid"]
    await set_active(svc, paid.integration_id, False)
    refused = await _retry(world, paid.id)
    assert refused.status_code == 409
    assert "disabled" in refused.json()["error"]
    await delete_integration(svc, paid.integration_id)
    gone = await _retry(world, paid.id)
    assert gone.status_code == 409
    assert "deleted" in gone.json()["error"]
    current = await entry(svc, paid.id)
    assert current is not None
    assert current.status == DlqStatus.PENDING_RETRY  # nothing changed


async def test_bulk_retry_answers_per_id(world: World, entries: dict[str, DlqRecord]) -> None:
    svc = world.services
    unit, paid, refused, other = (entries[k] for k in ("unit", "paid", "refused", "b"))
    await force(svc, paid.id, status="RETRYING")
    ids = [unit.id, "dlq_unknown", paid.id, other.id, refused.id, unit.id]
    response = await world.client.post(
        f"{URL}/retry", params={"orgId": 100}, json={"ids": ids}, headers=world.headers["user_a"]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["retried"], body["failed"]) == (2, 3)
    results = {r["id"]: r for r in body["results"]}
    assert [r["id"] for r in body["results"]] == [
        unit.id,
        "dlq_unknown",
        paid.id,
        other.id,
        refused.id,
    ]
    assert results[unit.id]["status"] == "RETRYING"
    assert results[unit.id]["jobId"]
    assert results[refused.id]["status"] == "RETRYING"
    assert results["dlq_unknown"]["status"] == "NOT_FOUND"
    assert results[other.id]["status"] == "NOT_FOUND"  # org B's entry does not exist for A
    assert results[paid.id]["status"] == "CONFLICT"
    assert results[paid.id]["error"]
    assert (await svc.queue.list(None, PageRequest())).total == 2
    other_now = await entry(svc, other.id)
    assert other_now is not None
    assert other_now.status == DlqStatus.PENDING_RETRY


async def test_bulk_requests_are_bounded(world: World, entries: dict[str, DlqRecord]) -> None:
    for path in (f"{URL}/retry", f"{URL}/delete"):
        for ids in ([f"dlq_{n}" for n in range(101)], []):
            response = await world.client.post(
                path, params={"orgId": 100}, json={"ids": ids}, headers=world.headers["user_a"]
            )
            assert response.status_code == 400, (path, len(ids))
            assert response.json()["details"][0]["loc"][:2] == ["body", "ids"]
    hundred = [f"dlq_{n}" for n in range(99)] + [entries["unit"].id]
    response = await world.client.post(
        f"{URL}/retry",
        params={"orgId": 100},
        json={"ids": hundred},
        headers=world.headers["user_a"],
    )
    assert response.status_code == 200
    assert (response.json()["retried"], response.json()["failed"]) == (1, 99)


# --- deleting ---


async def test_delete_one_and_many(world: World, entries: dict[str, DlqRecord]) -> None:
    svc = world.services
    unit, paid, refused, other = (entries[k] for k in ("unit", "paid", "refused", "b"))
    headers = world.headers["user_a"]
    deleted = await world.client.delete(f"{URL}/{unit.id}", params={"orgId": 100}, headers=headers)
    assert deleted.status_code == 204
    assert await entry(svc, unit.id) is None
    again = await world.client.delete(f"{URL}/{unit.id}", params={"orgId": 100}, headers=headers)
    assert again.status_code == 404
    await force(svc, paid.id, status="RETRYING")
    busy = await world.client.delete(f"{URL}/{paid.id}", params={"orgId": 100}, headers=headers)
    assert busy.status_code == 409
    response = await world.client.post(
        f"{URL}/delete",
        params={"orgId": 100},
        json={"ids": [refused.id, paid.id, other.id]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["deleted"], body["failed"]) == (1, 2)
    assert [r["status"] for r in body["results"]] == ["DELETED", "CONFLICT", "NOT_FOUND"]
    assert await entry(svc, refused.id) is None
    assert await entry(svc, paid.id) is not None
    assert await entry(svc, other.id) is not None
    audit = await svc.audit.list(PageRequest(), org_ids=[100, 101], action="dlq.delete")
    assert sorted(r.resource_id or "" for r in audit.items) == sorted([unit.id, refused.id])


# --- tenancy ---


@pytest.mark.parametrize("caller", ["user_b", "key_b"])
async def test_another_tenant_sees_nothing(
    world: World, entries: dict[str, DlqRecord], caller: str
) -> None:
    svc = world.services
    target = entries["unit"]
    headers = world.headers[caller]
    for org in (100, 101):  # acting for A is refused outright
        listed = await world.client.get(URL, params={"orgId": org}, headers=headers)
        assert listed.status_code == 404
    own = await _get(world, URL, caller, orgId=200)
    assert _ids(own) == [entries["b"].id]
    for method, path in (
        ("GET", f"{URL}/{target.id}"),
        ("POST", f"{URL}/{target.id}/retry"),
        ("DELETE", f"{URL}/{target.id}"),
    ):
        response = await world.client.request(method, path, params={"orgId": 200}, headers=headers)
        assert response.status_code == 404, (method, path)
    for path, status in ((f"{URL}/retry", "NOT_FOUND"), (f"{URL}/delete", "NOT_FOUND")):
        response = await world.client.post(
            path, params={"orgId": 200}, json={"ids": [target.id]}, headers=headers
        )
        assert response.json()["results"][0]["status"] == status
    untouched = await entry(svc, target.id)
    assert untouched is not None
    assert untouched.status == DlqStatus.PENDING_RETRY
    assert (await svc.queue.list(None, PageRequest())).total == 0


async def test_a_unit_does_not_see_its_organization_entries(
    world: World, entries: dict[str, DlqRecord]
) -> None:
    paid = entries["paid"]  # the organization's own event
    response = await world.client.get(
        f"{URL}/{paid.id}", params={"orgId": 101}, headers=world.headers["user_a"]
    )
    assert response.status_code == 404
