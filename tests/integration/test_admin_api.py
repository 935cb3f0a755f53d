"""Organizations, units, users, API keys and the audit log through the admin API."""

from __future__ import annotations

from sqlalchemy import select, text
from tests.support import ADMIN_PASSWORD, World

from junctionbox.store.tables import metadata


async def test_organization_lifecycle(world: World) -> None:
    admin, http = world.headers["admin"], world.client
    created = await http.post(
        "/api/v1/admin/orgs",
        json={"name": "Care Home", "code": "CH", "tags": ["north"], "timezone": "Asia/Kolkata"},
        headers=admin,
    )
    assert created.status_code == 201
    org = created.json()
    assert org["orgId"] == 202  # next after the highest existing id
    assert org["tags"] == ["north"]
    patched = await http.patch(
        f"/api/v1/admin/orgs/{org['orgId']}", json={"region": "EU"}, headers=admin
    )
    assert patched.json()["region"] == "EU"
    assert patched.json()["name"] == "Care Home"
    listed = (await http.get("/api/v1/admin/orgs?search=care", headers=admin)).json()
    assert [o["orgId"] for o in listed["organizations"]] == [org["orgId"]]
    assert (
        await http.delete(f"/api/v1/admin/orgs/{org['orgId']}", headers=admin)
    ).status_code == 204
    assert (await http.get(f"/api/v1/admin/orgs/{org['orgId']}", headers=admin)).status_code == 404


async def test_pagination_reports_total_and_has_more(world: World) -> None:
    admin, http = world.headers["admin"], world.client
    first = (await http.get("/api/v1/admin/orgs?page=1&limit=1", headers=admin)).json()
    second = (await http.get("/api/v1/admin/orgs?page=2&limit=1", headers=admin)).json()
    assert (first["total"], first["page"], first["limit"], first["hasMore"]) == (2, 1, 1, True)
    assert second["hasMore"] is False
    assert first["organizations"][0]["orgId"] != second["organizations"][0]["orgId"]
    bad = await http.get("/api/v1/admin/orgs?limit=100000", headers=admin)
    assert bad.status_code == 400


async def test_ids_are_one_space_for_orgs_and_units(world: World) -> None:
    admin, http = world.headers["admin"], world.client
    clash = await http.post("/api/v1/admin/orgs", json={"orgId": 101, "name": "x"}, headers=admin)
    assert clash.status_code == 409
    assert clash.json()["code"] == "CONFLICT"
    unit = (await http.get("/api/v1/admin/units/101", headers=admin)).json()
    assert (unit["rid"], unit["orgId"]) == (101, 100)
    assert (await http.get("/api/v1/admin/orgs/101", headers=admin)).status_code == 404
    assert (await http.get("/api/v1/admin/units/100", headers=admin)).status_code == 404


async def test_an_org_in_use_cannot_be_deleted(world: World) -> None:
    response = await world.client.delete("/api/v1/admin/orgs/100", headers=world.headers["admin"])
    assert response.status_code == 409
    assert (
        await world.client.get("/api/v1/admin/orgs/100", headers=world.headers["admin"])
    ).status_code == 200


async def test_user_rules(world: World) -> None:
    admin, http = world.headers["admin"], world.client
    duplicate = await http.post(
        "/api/v1/admin/users",
        json={"email": "USER-A@example.com", "password": "password-123", "orgId": 100},
        headers=admin,
    )
    assert duplicate.status_code == 409
    no_org = await http.post(
        "/api/v1/admin/users",
        json={"email": "x@example.com", "password": "password-123"},
        headers=admin,
    )
    assert no_org.status_code == 400
    unknown_org = await http.post(
        "/api/v1/admin/users",
        json={"email": "y@example.com", "password": "password-123", "orgId": 999},
        headers=admin,
    )
    assert unknown_org.status_code == 404
    assert (await http.get("/api/v1/admin/users?search=y@", headers=admin)).json()["total"] == 0
    short = await http.post(
        "/api/v1/admin/users",
        json={"email": "z@example.com", "password": "short", "orgId": 100},
        headers=admin,
    )
    assert short.status_code == 400
    assert short.json()["details"][0]["loc"] == ["body", "password"]


async def test_api_key_is_shown_once_and_stored_hashed(world: World) -> None:
    admin, http = world.headers["admin"], world.client
    created = (
        await http.post("/api/v1/admin/api-keys", json={"orgId": 200, "name": "erp"}, headers=admin)
    ).json()
    assert created["key"].startswith(created["prefix"])
    listed = (await http.get("/api/v1/admin/api-keys?orgId=200", headers=admin)).json()
    assert all("key" not in k for k in listed["apiKeys"])
    assert created["id"] in {k["id"] for k in listed["apiKeys"]}


async def test_database_never_holds_passwords_or_keys_in_plain_text(world: World) -> None:
    secrets = [
        "password-123",
        ADMIN_PASSWORD,
        world.headers["key_a"]["x-api-key"],
        world.headers["key_b"]["x-api-key"],
    ]
    async with world.services.db.read() as conn:
        for table in metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            dump = repr(rows)
            for secret in secrets:
                assert secret not in dump, f"{secret!r} found in {table.name}"


async def test_every_change_is_audited_with_secrets_masked(world: World) -> None:
    admin, http = world.headers["admin"], world.client
    users = (await http.get("/api/v1/admin/users?search=user-b", headers=admin)).json()["users"]
    await http.patch(
        f"/api/v1/admin/users/{users[0]['id']}", json={"password": "new-password-9"}, headers=admin
    )
    log = (
        await http.get(
            "/api/v1/admin/audit-logs?resourceType=user&action=user.update", headers=admin
        )
    ).json()
    entry = log["auditLogs"][0]
    assert entry["actorEmail"] == "root@example.com"
    assert entry["before"]["email"] == "user-b@example.com"
    assert "password_hash" not in entry["after"]
    assert "new-password-9" not in repr(entry)
    assert entry["requestId"]
    actions = {
        e["action"]
        for e in (await http.get("/api/v1/admin/audit-logs?limit=100", headers=admin)).json()[
            "auditLogs"
        ]
    }
    assert {
        "organization.create",
        "org_unit.create",
        "user.create",
        "api_key.create",
        "user.update",
    } <= actions
    old = await http.get("/api/v1/admin/audit-logs?endDate=2000-01-01", headers=admin)
    assert old.json()["total"] == 0


async def test_failed_request_writes_nothing(world: World) -> None:
    async with world.services.db.read() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM audit_logs"))).scalar()
    response = await world.client.post(
        "/api/v1/admin/orgs/999/units", json={"name": "orphan"}, headers=world.headers["admin"]
    )
    assert response.status_code == 404
    async with world.services.db.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit_logs"))).scalar() == before
        assert (
            await conn.execute(text("SELECT count(*) FROM entities WHERE name='orphan'"))
        ).scalar() == 0
