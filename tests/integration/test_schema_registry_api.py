"""The per-tenant schema registry: registration and evolution, reads, field lists, validators."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support import World

from junctionbox.domain.paging import PageRequest

REGISTER = "/api/v1/integration/events/schema"
TYPES = "/api/v1/integration/events/types"


def closed(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": False,
    }


STR, INT = {"type": "string"}, {"type": "integer"}


async def register(
    world: World,
    event_type: str,
    schema: Any,
    *,
    caller: str = "user_a",
    org_id: int | None = None,
    expect: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    params = {"orgId": org_id} if org_id else None
    response = await world.client.put(
        REGISTER,
        json={"eventType": event_type, "schema": schema, **extra},
        headers=world.headers[caller],
        params=params,
    )
    if expect is not None:
        assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    body["_status"] = response.status_code
    return body


async def get(world: World, path: str, caller: str = "user_a", **params: Any) -> Any:
    return await world.client.get(path, headers=world.headers[caller], params=params or None)


async def test_register_then_reregister_the_same_schema(world: World) -> None:
    schema = closed({"id": STR, "total": INT}, ("id",))
    created = await register(
        world, "order.created", schema, expect=201, description="An order", example={"id": "o1"}
    )
    assert created["eventType"] == "order.created"
    assert created["version"] == created["latestVersion"] == 1
    assert created["compatibility"] == "BACKWARD"
    assert created["orgId"] == 100
    assert created["inherited"] is False
    assert created["schema"] == schema
    assert created["example"] == {"id": "o1"}
    assert created["id"].startswith("etp_")
    assert len(created["fingerprint"]) == 64

    # same document, keys in another order: no new version (Confluent semantics)
    reordered = dict(reversed(list(schema.items())))
    again = await register(world, "order.created", reordered, caller="key_a", expect=200)
    assert again["version"] == 1
    assert again["fingerprint"] == created["fingerprint"]
    detail = (await get(world, f"{TYPES}/order.created")).json()
    assert [v["version"] for v in detail["versions"]] == [1]
    assert detail["description"] == "An order"

    # the same schema with a new description changes the type, not the versions
    described = await register(world, "order.created", schema, expect=200, description="Orders")
    assert described["description"] == "Orders"
    assert described["version"] == 1


async def test_backward_evolution_and_incompatible_change(world: World) -> None:
    v1 = closed({"id": STR}, ("id",))
    await register(world, "order.created", v1, expect=201)
    # adding an optional field to a closed content model: new readers read old data
    v2 = closed({"id": STR, "note": STR}, ("id",))
    assert (await register(world, "order.created", v2, expect=201))["version"] == 2
    # a new required field: old data does not have it
    v3 = closed({"id": STR, "note": STR, "total": INT}, ("id", "total"))
    refused = await register(world, "order.created", v3, expect=409)
    assert refused["code"] == "CONFLICT"
    assert "not BACKWARD compatible" in refused["error"]
    assert "'total' added to required" in refused["error"]
    assert "version 2" in refused["error"]
    assert refused["details"][0]["loc"][0] == "schema"
    assert "'total' added to required" in refused["details"][0]["message"]
    # nothing was written
    detail = (await get(world, f"{TYPES}/order.created")).json()
    assert detail["latestVersion"] == 2
    assert detail["schema"] == v2


async def test_forward_full_and_none_modes(world: World) -> None:
    base = closed({"id": STR, "note": STR}, ("id",))
    await register(world, "fwd", base, expect=201, compatibility="FORWARD")
    # FORWARD: old readers read new data, so requiring more is fine ...
    stricter = closed({"id": STR, "note": STR}, ("id", "note"))
    assert (await register(world, "fwd", stricter, expect=201))["compatibility"] == "FORWARD"
    # ... and a field the old closed model does not know is not
    wider = closed({"id": STR, "note": STR, "extra": STR}, ("id", "note"))
    refused = await register(world, "fwd", wider, expect=409)
    assert "version 2 cannot read data written with the new schema" in refused["error"]

    await register(world, "full", base, expect=201, compatibility="full")
    refused = await register(world, "full", closed({"id": STR}, ("id",)), expect=409)
    assert "FULL" in refused["error"]
    # annotations only: compatible both ways, still a new version
    annotated = {**base, "description": "documented"}
    assert (await register(world, "full", annotated, expect=201))["version"] == 2

    await register(world, "free", base, expect=201, compatibility="NONE")
    anything = {"type": "array", "items": INT}
    assert (await register(world, "free", anything, expect=201))["version"] == 2

    bad_mode = await world.client.put(
        REGISTER,
        json={"eventType": "x", "schema": base, "compatibility": "SIDEWAYS"},
        headers=world.headers["user_a"],
    )
    assert bad_mode.status_code == 400


async def test_transitive_modes_check_every_previous_version(world: World) -> None:
    v1 = closed({"a": STR}, ("a",))
    await register(world, "t", v1, expect=201)
    # an incompatible step is let through by switching the check off for it
    v2 = closed({"a": INT}, ("a",))
    await register(world, "t", v2, expect=201, compatibility="NONE")
    # BACKWARD compares with the latest version only: v3 reads v2's data
    v3 = closed({"a": INT, "b": STR}, ("a",))
    assert (await register(world, "t", v3, compatibility="BACKWARD", expect=201))["version"] == 3
    # BACKWARD_TRANSITIVE compares with all of them: v4 cannot read v1's data
    v4 = closed({"a": INT, "b": STR, "c": STR}, ("a",))
    refused = await register(world, "t", v4, compatibility="BACKWARD_TRANSITIVE", expect=409)
    assert "cannot read data written with version 1" in refused["error"]
    assert all("version 1" in d["message"] for d in refused["details"])
    # the mode change was part of the refused request, so it did not stick
    assert (await get(world, f"{TYPES}/t")).json()["compatibility"] == "BACKWARD"
    assert (await register(world, "t", v4, expect=201))["version"] == 4

    check = await world.client.post(
        f"{TYPES}/t/compatibility",
        json={"schema": closed({"a": INT}, ("a",))},
        headers=world.headers["user_a"],
    )
    assert check.status_code == 200
    body = check.json()
    assert body["compatible"] is False
    assert body["latestVersion"] == 4
    reason = body["reasons"][0]
    assert reason["direction"] == "backward"
    assert reason["version"] == 4
    assert "removed from a closed content model" in reason["reason"]
    ok = await world.client.post(
        f"{TYPES}/t/compatibility", json={"schema": v4}, headers=world.headers["user_a"]
    )
    assert ok.json() == {
        "compatible": True,
        "compatibility": "BACKWARD",
        "latestVersion": 4,
        "reasons": [],
    }
    missing = await world.client.post(
        f"{TYPES}/nope/compatibility", json={"schema": v4}, headers=world.headers["user_a"]
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "strin"}, ["schema", "type"]),
        ({"properties": {"a": {"$ref": "https://example.com/a.json"}}}, ["schema"]),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, ["schema"]),
        ({"type": "string", "pattern": "(unclosed"}, ["schema"]),
    ],
)
async def test_an_invalid_schema_document_is_400(
    world: World, schema: Any, where: list[str]
) -> None:
    refused = await register(world, "bad", schema, expect=400)
    assert refused["code"] == "VALIDATION_ERROR"
    assert refused["details"][0]["loc"][: len(where)] == where
    assert (await get(world, f"{TYPES}/bad")).status_code == 404


async def test_names_and_examples_are_checked(world: World) -> None:
    schema = closed({"id": STR, "lines": {"type": "array", "items": INT}}, ("id",))
    refused = await register(world, "ex", schema, expect=400, example={"lines": ["x"]})
    assert "example does not match the schema" in refused["error"]
    assert {tuple(d["loc"]) for d in refused["details"]} == {
        ("example", "id"),
        ("example", "lines", "0"),
    }
    for name in ("has space", "a/b", "x" * 201, ""):
        await register(world, name, schema, expect=400)
    not_json = await world.client.put(
        REGISTER,
        content=b'{"eventType": "n", "schema": {"type": "number"}, "example": NaN}',
        headers={**world.headers["user_a"], "content-type": "application/json"},
    )
    assert not_json.status_code == 400

    await register(world, "ex", schema, expect=201, example={"id": "1", "lines": [1]})
    # a new schema the stored example no longer matches needs a new example
    v2 = closed({"id": STR, "lines": {"type": "array", "items": INT}, "n": INT}, ("id",))
    v2_strict = {**v2, "properties": {**v2["properties"], "id": {"type": "string", "minLength": 3}}}
    await register(world, "ex", v2_strict, compatibility="NONE", expect=400)
    await register(
        world, "ex", v2_strict, compatibility="NONE", expect=201, example={"id": "abc", "lines": []}
    )

    patch = await world.client.patch(
        f"{TYPES}/ex", json={"example": {"id": 1}}, headers=world.headers["user_a"]
    )
    assert patch.status_code == 400
    assert patch.json()["details"][0]["loc"] == ["example", "id"]
    patch = await world.client.patch(
        f"{TYPES}/ex",
        json={"example": None, "description": "Examples", "compatibility": "full_transitive"},
        headers=world.headers["user_a"],
    )
    assert patch.status_code == 200, patch.text
    assert patch.json()["example"] is None
    assert patch.json()["description"] == "Examples"
    assert patch.json()["compatibility"] == "FULL_TRANSITIVE"
    null_mode = await world.client.patch(
        f"{TYPES}/ex", json={"compatibility": None}, headers=world.headers["user_a"]
    )
    assert null_mode.status_code == 400


async def test_read_versions_list_search_and_delete(world: World) -> None:
    v1 = closed({"id": STR}, ("id",))
    v2 = closed({"id": STR, "note": STR}, ("id",))
    await register(world, "patient.admitted", v1, expect=201, description="Admissions")
    await register(world, "patient.admitted", v2, expect=201)
    await register(world, "invoice.paid", v1, expect=201)

    one = (await get(world, f"{TYPES}/patient.admitted/versions/1")).json()
    assert one["version"] == 1
    assert one["schema"] == v1
    assert one["latestVersion"] == 2
    assert one["eventType"] == "patient.admitted"
    assert one["createdBy"]
    latest = (await get(world, f"{TYPES}/patient.admitted/versions/latest")).json()
    assert latest["version"] == 2
    assert latest["schema"] == v2
    assert (await get(world, f"{TYPES}/patient.admitted/versions/3")).status_code == 404
    assert (await get(world, f"{TYPES}/patient.admitted/versions/first")).status_code == 400

    listed = (await get(world, TYPES, limit=1)).json()
    assert listed["total"] == 2
    assert listed["hasMore"] is True
    assert [t["eventType"] for t in listed["eventTypes"]] == ["invoice.paid"]
    searched = (await get(world, TYPES, search="ADMISSION")).json()
    assert [t["eventType"] for t in searched["eventTypes"]] == ["patient.admitted"]
    assert (await get(world, TYPES, search="%")).json()["total"] == 0

    deleted = await world.client.delete(f"{TYPES}/invoice.paid", headers=world.headers["key_a"])
    assert deleted.status_code == 204
    assert (await get(world, f"{TYPES}/invoice.paid")).status_code == 404
    # a type registered again after a delete starts over at version 1
    assert (await register(world, "invoice.paid", v2, expect=201))["version"] == 1


async def test_units_inherit_and_override_their_organizations_types(world: World) -> None:
    org_schema = closed({"id": STR}, ("id",))
    await register(world, "shared", org_schema, expect=201)
    await register(world, "org.only", org_schema, expect=201)
    unit_view = (await get(world, f"{TYPES}/shared", orgId=101)).json()
    assert unit_view["orgId"] == 100
    assert unit_view["inherited"] is True
    # changing the organization's type from the unit is refused with a pointer to the org
    patch = await world.client.patch(
        f"{TYPES}/shared",
        params={"orgId": 101},
        json={"description": "x"},
        headers=world.headers["user_a"],
    )
    assert patch.status_code == 404
    assert "orgId=100" in patch.json()["error"]

    unit_schema = {"type": "object", "properties": {"id": INT}}
    await register(world, "shared", unit_schema, org_id=101, expect=201)
    overridden = (await get(world, f"{TYPES}/shared", orgId=101)).json()
    assert overridden["orgId"] == 101
    assert overridden["inherited"] is False
    assert overridden["schema"] == unit_schema
    assert (await get(world, f"{TYPES}/shared")).json()["schema"] == org_schema
    listed = (await get(world, TYPES, orgId=101)).json()
    assert [(t["eventType"], t["orgId"]) for t in listed["eventTypes"]] == [
        ("org.only", 100),
        ("shared", 101),
    ]
    assert (await get(world, TYPES)).json()["total"] == 2


async def test_field_schemas(world: World) -> None:
    schema = {
        "type": "object",
        "required": ["patient"],
        "properties": {
            "patient": {"$ref": "#/$defs/person", "description": "The patient"},
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sku"],
                    "properties": {"sku": STR, "qty": INT},
                },
            },
            "status": {"enum": ["new", "done"]},
        },
        "$defs": {
            "person": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": STR,
                    "born": {"type": "string", "format": "date"},
                    "address": {"type": "object", "properties": {"city": STR}},
                },
            }
        },
    }
    await register(world, "visit", schema, expect=201)
    await register(world, "other", {"type": "object", "properties": {"x": STR}}, expect=201)
    one = (await get(world, "/api/v1/field-schemas/visit")).json()
    assert one["eventType"] == "visit"
    assert one["version"] == 1
    fields = {f["path"]: f for f in one["fields"]}
    assert set(fields) == {
        "lines",
        "lines[].qty",
        "lines[].sku",
        "patient",
        "patient.address",
        "patient.address.city",
        "patient.born",
        "patient.name",
        "status",
    }
    assert fields["patient"]["required"]
    assert fields["patient"]["description"] == "The patient"
    assert fields["patient.name"]["required"]
    assert fields["lines[].sku"]["required"]
    assert fields["patient.born"]["format"] == "date"
    assert fields["status"]["enum"] == ["new", "done"]
    assert fields["status"]["type"] == "string"
    assert fields["lines"]["type"] == "array"
    assert fields["lines[].qty"]["type"] == "integer"

    everything = (await get(world, "/api/v1/field-schemas")).json()
    assert [(f["eventType"], f["version"]) for f in everything] == [("other", 1), ("visit", 1)]
    filtered = (await get(world, "/api/v1/field-schemas", eventType="other")).json()
    assert [f["path"] for f in filtered[0]["fields"]] == ["x"]
    assert (await get(world, "/api/v1/field-schemas", eventType="none")).json() == []
    assert (await get(world, "/api/v1/field-schemas/none")).status_code == 404


async def test_other_tenants_types_are_invisible(world: World) -> None:
    await register(world, "secret.type", closed({"id": STR}), expect=201)
    for caller in ("user_b", "key_b"):
        assert (await get(world, f"{TYPES}/secret.type", caller)).status_code == 404
        assert (await get(world, f"{TYPES}/secret.type/versions/1", caller)).status_code == 404
        assert (await get(world, "/api/v1/field-schemas/secret.type", caller)).status_code == 404
        assert (await get(world, "/api/v1/field-schemas", caller)).json() == []
        assert (await get(world, TYPES, caller)).json()["total"] == 0
        for org_id in (100, 101):  # naming the other tenant does not help
            assert (await get(world, TYPES, caller, orgId=org_id)).status_code == 404
        headers = world.headers[caller]
        patch = await world.client.patch(f"{TYPES}/secret.type", json={}, headers=headers)
        assert patch.status_code == 404
        delete = await world.client.delete(f"{TYPES}/secret.type", headers=headers)
        assert delete.status_code == 404
    anonymous = await world.client.put(REGISTER, json={"eventType": "x", "schema": {}})
    assert anonymous.status_code == 401
    # org 200 registering the same name gets its own type
    theirs = await register(world, "secret.type", {"type": "object"}, caller="user_b", expect=201)
    assert theirs["orgId"] == 200
    assert theirs["version"] == 1
    assert (await get(world, f"{TYPES}/secret.type")).json()["schema"] == closed({"id": STR})
    # an admin names the tenant
    admin = (await get(world, f"{TYPES}/secret.type", "admin", orgId=200)).json()
    assert admin["orgId"] == 200


async def test_every_change_is_audited(world: World) -> None:
    v1 = closed({"id": STR}, ("id",))
    await register(world, "audited", v1, expect=201)
    await register(world, "audited", v1, expect=200)  # no change, no record
    await register(world, "audited", closed({"id": STR, "n": INT}, ("id",)), expect=201)
    await world.client.patch(
        f"{TYPES}/audited", json={"description": "d"}, headers=world.headers["user_a"]
    )
    await register(world, "audited", closed({"id": INT}), expect=409)  # refused: no record
    await world.client.delete(f"{TYPES}/audited", headers=world.headers["key_a"])
    page = await world.services.audit.list(PageRequest(), org_ids=[100], resource_type="event_type")
    entries = list(reversed(page.items))
    assert [e.action for e in entries] == [
        "event_type.create",
        "event_type.register",
        "event_type.update",
        "event_type.delete",
    ]
    create, evolve, update, delete = entries
    assert create.after["version"] == 1
    assert create.after["schema"] == v1
    assert create.actor_kind == "user"
    assert delete.actor_kind == "api_key"
    assert evolve.before["version"] == 1
    assert evolve.after["version"] == 2
    assert update.before["description"] is None
    assert update.after["description"] == "d"
    assert delete.before["name"] == "audited"
    assert delete.after is None
    assert len({e.resource_id for e in entries}) == 1


async def test_validators_for_the_publish_path(world: World) -> None:
    registry = world.services.schemas
    schema = {
        "type": "object",
        "required": ["patient"],
        "properties": {
            "patient": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": STR, "age": {"type": "integer", "minimum": 0}},
            },
            "lines": {"type": "array", "items": closed({"sku": STR}, ("sku",))},
        },
    }
    await register(world, "admit", schema, expect=201)
    await register(world, "unit.override", {"type": "object"}, expect=201)
    await register(world, "unit.override", {"type": "array"}, org_id=101, expect=201)

    async with world.services.db.read() as conn:
        found = await registry.validators(conn, (100,), ["admit", "unit.override", "unknown"])
    assert set(found) == {"admit", "unit.override"}
    admit = found["admit"]
    assert (admit.event_type, admit.version) == ("admit", 1)
    assert admit.errors({"patient": {"name": "Ann", "age": 3}}) == []
    errors = admit.errors({"patient": {"age": -1}, "lines": [{"sku": "a"}, {"sku": 1, "x": 0}]})
    assert sorted(p for p, _ in errors) == [
        "/lines/1",
        "/lines/1/sku",
        "/patient/age",
        "/patient/name",
    ]
    assert found["unit.override"].errors({}) == []

    async with world.services.db.read() as conn:
        unit = await registry.validators(conn, (101, 100), ["admit", "unit.override"])
        other = await registry.validators(conn, (200,), ["admit"])
        none = await registry.validators(conn, (100,), [])
    assert unit["admit"] is admit  # inherited from the organization, compiled once
    assert unit["unit.override"].errors({}) == [("", '{} is not of type "array"')]
    assert other == {}
    assert none == {}

    # a new version is used from the next call on
    v2 = {**schema, "properties": {**schema["properties"], "ward": STR}}
    await register(world, "admit", v2, compatibility="NONE", expect=201)
    async with world.services.db.read() as conn:
        newer = await registry.validators(conn, (100,), ["admit"])
    assert newer["admit"].version == 2
    assert newer["admit"] is not admit
    assert [p for p, _ in newer["admit"].errors({"patient": {"name": "A"}, "ward": 7})] == ["/ward"]
