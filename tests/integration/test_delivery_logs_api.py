"""/api/v1/logs and /api/v1/execution-logs: filters, pagination, search, detail, export,
execution traces and tenant isolation. Rows are inserted directly, as the worker writes them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import insert
from tests.support import World

from junctionbox.domain.ids import new_id
from junctionbox.services.container import Services
from junctionbox.store.tables import delivery_logs

LOGS = "/api/v1/logs"
TRACES = "/api/v1/execution-logs"
BASE = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


async def insert_log(services: Services, **values: Any) -> dict[str, Any]:
    """One attempt row with plausible defaults; ``values`` override them."""
    row: dict[str, Any] = {
        "id": new_id("dlv"),
        "org_id": 100,
        "integration_id": "int_a",
        "integration_name": "Billing hook",
        "direction": "OUTBOUND",
        "delivery_id": "msg_" + new_id("msg")[-20:].lower(),
        "job_id": None,
        "event_id": "evt_1",
        "event_type": "appointment.created",
        "status": "SUCCESS",
        "target_url": "https://hooks.example.com/in",
        "http_method": "POST",
        "response_status": 200,
        "response_time_ms": 20,
        "attempt_count": 1,
        "error_message": None,
        "error_category": None,
        "original_payload": '{"patient":"p-1"}',
        "request_headers": {"content-type": "application/json", "webhook-id": "msg_x"},
        "request_body": '{"patient":"p-1"}',
        "response_headers": {"content-type": "text/plain"},
        "response_body": "ok",
        "correlation_id": None,
        "trace_id": new_id("trc"),
        "signature": "v1,abc=",
        "trigger_type": "EVENT",
        "action_name": None,
        "action_index": 0,
        "should_retry": False,
        "steps": [],
        "created_at": BASE,
        "delivered_at": None,
        **values,
    }
    async with services.db.write() as conn:
        await conn.execute(insert(delivery_logs).values(**row))
    return row


async def get(world: World, path: str, caller: str = "user_a", **params: Any) -> Any:
    response = await world.client.get(path, params=params, headers=world.headers[caller])
    assert response.status_code == 200, response.text
    return response.json()


def ids(body: dict[str, Any], key: str = "logs") -> list[str]:
    return [item["id"] if key == "logs" else item["logId"] for item in body[key]]


async def test_list_is_newest_first_and_filters_by_status_type_integration_and_dates(
    world: World,
) -> None:
    svc = world.services
    ok = await insert_log(svc, created_at=BASE)
    failed = await insert_log(
        svc,
        status="FAILED",
        response_status=400,
        error_category="CLIENT_ERROR",
        integration_id="int_b",
        event_type="invoice.paid",
        created_at=BASE + timedelta(hours=1),
    )
    retrying = await insert_log(
        svc, status="RETRYING", response_status=503, created_at=BASE + timedelta(days=1)
    )
    unit_row = await insert_log(svc, org_id=101, created_at=BASE + timedelta(days=2))
    await insert_log(svc, org_id=200, created_at=BASE + timedelta(hours=2))

    everything = await get(world, LOGS, orgId=100)
    assert ids(everything) == [unit_row["id"], retrying["id"], failed["id"], ok["id"]]
    assert everything["total"] == 4
    assert everything["hasMore"] is False

    unit_only = await get(world, LOGS, orgId=101)
    assert ids(unit_only) == [unit_row["id"]]

    bad = await get(world, LOGS, orgId=100, status="FAILED,RETRYING")
    assert ids(bad) == [retrying["id"], failed["id"]]
    repeated = await world.client.get(
        f"{LOGS}?orgId=100&status=failed&status=SUCCESS", headers=world.headers["user_a"]
    )
    assert set(ids(repeated.json())) == {failed["id"], ok["id"], unit_row["id"]}
    assert ids(await get(world, LOGS, orgId=100, eventType="invoice.paid")) == [failed["id"]]
    assert ids(await get(world, LOGS, orgId=100, integrationId="int_b")) == [failed["id"]]

    same_day = await get(world, LOGS, orgId=100, **{"from": "2024-03-10", "to": "2024-03-10"})
    assert ids(same_day) == [failed["id"], ok["id"]]
    exclusive = await get(
        world, LOGS, orgId=100, startDate="2024-03-10T12:30:00Z", endDate="2024-03-11T12:00:00Z"
    )
    assert ids(exclusive) == [failed["id"]]


async def test_pagination_reports_total_and_has_more(world: World) -> None:
    rows = [
        await insert_log(world.services, created_at=BASE + timedelta(minutes=n)) for n in range(5)
    ]
    newest_first = [r["id"] for r in reversed(rows)]
    first = await get(world, LOGS, orgId=100, page=1, limit=2)
    assert ids(first) == newest_first[:2]
    assert (first["total"], first["page"], first["limit"], first["hasMore"]) == (5, 1, 2, True)
    last = await get(world, LOGS, orgId=100, page=3, limit=2)
    assert ids(last) == newest_first[4:]
    assert last["hasMore"] is False


async def test_search_covers_ids_names_errors_and_is_literal(world: World) -> None:
    svc = world.services
    by_event = await insert_log(svc, event_id="evt_patient123")
    by_error = await insert_log(svc, status="FAILED", error_message="Connection REFUSED by peer")
    by_corr = await insert_log(svc, correlation_id="corr-77")
    by_delivery = await insert_log(svc, delivery_id="msg_findme")
    by_name = await insert_log(svc, integration_name="100% Partner")

    async def found(term: str) -> list[str]:
        return ids(await get(world, LOGS, orgId=100, search=term))

    assert await found("patient123") == [by_event["id"]]
    assert await found("connection refused") == [by_error["id"]]
    assert await found("CORR-77") == [by_corr["id"]]
    assert await found("findme") == [by_delivery["id"]]
    assert await found("100%") == [by_name["id"]]  # % is a character, not a wildcard
    assert await found("r%d") == []  # would match "REFUSED" if % were a wildcard


async def test_detail_shows_headers_bodies_and_steps_with_secrets_masked(world: World) -> None:
    row = await insert_log(
        world.services,
        request_headers={"authorization": "Bearer abcdefghijklmnop", "webhook-id": "msg_1"},
        response_headers={"set-cookie": "sid=1"},
        steps=[{"step": "match", "status": "OK", "at": "2024-03-10T12:00:00Z", "durationMs": 1}],
    )
    detail = await get(world, f"{LOGS}/{row['id']}", orgId=100)
    assert detail["requestBody"] == '{"patient":"p-1"}'
    assert detail["responseBody"] == "ok"
    assert detail["requestHeaders"] == {"authorization": "***", "webhook-id": "msg_1"}
    assert detail["responseHeaders"] == {"set-cookie": "***"}
    assert detail["messageId"] == detail["deliveryId"] == row["delivery_id"]
    assert detail["steps"][0]["step"] == "match"
    assert detail["steps"][0]["durationMs"] == 1
    assert detail["originalPayload"] == '{"patient":"p-1"}'


async def test_another_tenant_never_sees_the_logs(world: World) -> None:
    row = await insert_log(world.services, trace_id="trc_secret")
    http = world.client
    for caller in ("user_b", "key_b"):
        headers = world.headers[caller]
        assert (await get(world, LOGS, caller, orgId=200))["total"] == 0
        for path in (f"{LOGS}/{row['id']}", f"{TRACES}/trc_secret", f"{TRACES}/{row['id']}"):
            assert (await http.get(f"{path}?orgId=200", headers=headers)).status_code == 404
        for path in (LOGS, TRACES, f"{LOGS}/export", f"{LOGS}/{row['id']}"):
            denied = await http.get(f"{path}?orgId=100", headers=headers)
            assert denied.status_code == 404
        listed = await get(world, TRACES, caller, orgId=200)
        assert listed["total"] == 0
        export = await http.get(f"{LOGS}/export?orgId=200&format=json", headers=headers)
        assert export.json() == []


async def test_csv_export_parses_back_and_defuses_formulas(world: World) -> None:
    svc = world.services
    svc.delivery_logs.export_batch = 2  # several keyset batches, with a tie on created_at
    for n in range(4):
        await insert_log(svc, created_at=BASE, event_id=f"evt_{n}")
    evil = await insert_log(
        svc,
        status="FAILED",
        created_at=BASE + timedelta(minutes=1),
        error_message='=HYPERLINK("http://evil.example","x")',
        integration_name="+cmd",
        correlation_id="@SUM(1)",
    )
    await insert_log(svc, org_id=200)
    response = await world.client.get(
        f"{LOGS}/export?orgId=100&format=csv", headers=world.headers["user_a"]
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.headers["x-total-count"] == "5"
    assert response.headers["x-export-truncated"] == "false"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 5
    assert rows[0]["id"] == evil["id"]
    assert rows[0]["errorMessage"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[0]["integrationName"] == "'+cmd"
    assert rows[0]["correlationId"] == "'@SUM(1)"
    assert sorted(r["eventId"] for r in rows[1:]) == [f"evt_{n}" for n in range(4)]
    assert rows[1]["createdAt"] == "2024-03-10T12:00:00Z"
    assert rows[1]["responseStatus"] == "200"
    assert "requestBody" not in rows[0]

    filtered = await world.client.get(
        f"{LOGS}/export?orgId=100&format=csv&status=FAILED", headers=world.headers["user_a"]
    )
    assert [r["id"] for r in csv.DictReader(io.StringIO(filtered.text))] == [evil["id"]]


async def test_json_export_is_an_array_with_optional_payloads_and_a_row_cap(
    world: World,
) -> None:
    svc = world.services
    rows = [
        await insert_log(svc, created_at=BASE + timedelta(seconds=n), request_body=f'{{"n":{n}}}')
        for n in range(5)
    ]
    user = world.headers["user_a"]
    plain = await world.client.get(f"{LOGS}/export?orgId=100&format=json", headers=user)
    assert plain.headers["content-type"].startswith("application/json")
    items = orjson.loads(plain.content)
    assert [i["id"] for i in items] == [r["id"] for r in reversed(rows)]
    assert "requestBody" not in items[0]
    assert items[0]["createdAt"] == "2024-03-10T12:00:04Z"

    full = await world.client.get(
        f"{LOGS}/export?orgId=100&format=json&includePayloads=true", headers=user
    )
    assert orjson.loads(full.content)[0]["requestBody"] == '{"n":4}'

    svc.delivery_logs.export_max_rows = 3
    capped = await world.client.get(f"{LOGS}/export?orgId=100&format=json", headers=user)
    assert len(orjson.loads(capped.content)) == 3
    assert capped.headers["x-total-count"] == "5"
    assert capped.headers["x-export-truncated"] == "true"
    empty = await world.client.get(
        f"{LOGS}/export?orgId=100&format=json&eventType=none", headers=user
    )
    assert orjson.loads(empty.content) == []


async def test_execution_logs_project_statuses_and_show_the_trace_with_curl(
    world: World,
) -> None:
    svc = world.services
    curl = (
        "curl -X POST 'https://hooks.example.com/in' -H 'authorization: Bearer sk_live_1234567890'"
    )
    steps = [
        {"step": "match", "status": "OK", "at": "2024-03-10T12:00:00Z", "durationMs": 0},
        {
            "step": "transform",
            "status": "OK",
            "at": "2024-03-10T12:00:00Z",
            "durationMs": 1,
            "detail": {"output": {"patient": "p-1"}},
        },
        {
            "step": "request",
            "status": "OK",
            "at": "2024-03-10T12:00:00Z",
            "durationMs": 30,
            "detail": {"curl": curl, "headers": {"authorization": "Bearer xyz1234567890"}},
        },
        {
            "step": "response",
            "status": "error",
            "at": "2024-03-10T12:00:00Z",
            "durationMs": 0,
            "detail": {"status": 503},
        },
        {
            "step": "decision",
            "status": "OK",
            "at": "2024-03-10T12:00:00Z",
            "durationMs": 0,
            "detail": {"decision": "RETRY"},
        },
    ]
    first = await insert_log(
        svc,
        delivery_id="msg_d1",
        status="RETRYING",
        response_status=503,
        error_category="SERVER_ERROR",
        steps=steps,
        created_at=BASE,
    )
    skipped = await insert_log(
        svc,
        delivery_id="msg_d1",
        status="RETRYING",
        response_status=None,
        error_category="CIRCUIT_OPEN",
        attempt_count=1,
        created_at=BASE + timedelta(seconds=1),
    )
    final = await insert_log(
        svc,
        delivery_id="msg_d1",
        status="ABANDONED",
        response_status=503,
        error_category="SERVER_ERROR",
        attempt_count=2,
        created_at=BASE + timedelta(seconds=2),
    )
    ok = await insert_log(svc, created_at=BASE + timedelta(seconds=3))

    listed = await get(world, TRACES, orgId=100)
    statuses = {item["logId"]: item["status"] for item in listed["executionLogs"]}
    assert statuses == {
        first["id"]: "PENDING",
        skipped["id"]: "SKIPPED",
        final["id"]: "FAILED",
        ok["id"]: "SUCCESS",
    }
    assert listed["executionLogs"][0]["deliveryStatus"] == "SUCCESS"
    assert ids(await get(world, TRACES, orgId=100, status="SKIPPED"), "executionLogs") == [
        skipped["id"]
    ]
    assert set(ids(await get(world, TRACES, orgId=100, status="FAILED,PENDING"), "executionLogs"))
    wrong = await world.client.get(
        f"{TRACES}?orgId=100&status=RETRYING", headers=world.headers["user_a"]
    )
    assert wrong.status_code == 400

    trace = await get(world, f"{TRACES}/{first['trace_id']}", orgId=100)
    assert trace["traceId"] == first["trace_id"]
    assert trace["status"] == "PENDING"
    assert [s["step"] for s in trace["steps"]] == [
        "match",
        "transform",
        "request",
        "response",
        "decision",
    ]
    assert trace["steps"][1]["detail"] == {"output": {"patient": "p-1"}}
    assert trace["steps"][3]["status"] == "FAILED"  # the writer's "error", as documented
    assert trace["curl"].startswith("curl -X POST 'https://hooks.example.com/in'")
    assert "sk_live_1234567890" not in trace["curl"]
    assert trace["steps"][2]["detail"]["headers"] == {"authorization": "***"}
    assert trace["requestPayload"] == '{"patient":"p-1"}'
    assert [a["logId"] for a in trace["attempts"]] == [first["id"], skipped["id"], final["id"]]

    by_log_id = await get(world, f"{TRACES}/{final['id']}", orgId=100)
    assert by_log_id["logId"] == final["id"]
    assert by_log_id["curl"] is None


async def test_stats_count_by_status(world: World) -> None:
    svc = world.services
    await insert_log(svc, response_time_ms=10)
    await insert_log(svc, response_time_ms=30)
    await insert_log(svc, status="FAILED", response_time_ms=20)
    await insert_log(svc, org_id=200, status="FAILED")
    stats = await get(world, f"{LOGS}/stats", orgId=100)
    assert stats["total"] == 3
    assert stats["byStatus"] == {"FAILED": 1, "SUCCESS": 2}
    assert abs(stats["successRate"] - 2 / 3) < 1e-9
    assert stats["avgResponseTimeMs"] == 20


async def test_bad_filters_are_400_with_the_parameter(world: World) -> None:
    user = world.headers["user_a"]
    for query, name in (
        ("status=BOGUS", "status"),
        ("from=yesterday", "from"),
        ("to=2024-13-01", "to"),
        ("triggerType=NOPE", "triggerType"),
        ("format=xml", "format"),
    ):
        path = f"{LOGS}/export" if name == "format" else LOGS
        response = await world.client.get(f"{path}?orgId=100&{query}", headers=user)
        assert response.status_code == 400, query
        assert ["query", name] in [d["loc"] for d in response.json()["details"]]
    missing = await world.client.get(f"{LOGS}/dlv_nope?orgId=100", headers=user)
    assert missing.status_code == 404
