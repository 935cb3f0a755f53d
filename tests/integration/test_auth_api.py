"""Login, logout, tokens and API keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import jwt
from sqlalchemy import select
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD, World

from junctionbox.store.tables import api_keys


async def test_login_returns_token_and_user(world: World) -> None:
    response = await world.client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL.upper(), "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["email"] == ADMIN_EMAIL
    assert body["user"]["role"] == "ADMIN"
    assert body["user"]["lastLoginAt"] is not None
    assert "passwordHash" not in body["user"]
    me = await world.client.get(
        "/api/v1/auth/me", headers={"authorization": f"Bearer {body['token']}"}
    )
    assert me.json()["user"]["email"] == ADMIN_EMAIL


async def test_wrong_password_and_unknown_email_answer_the_same(world: World) -> None:
    wrong = await world.client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "nope-nope"}
    )
    unknown = await world.client.post(
        "/api/v1/auth/login", json={"email": "ghost@example.com", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"] == unknown.json()["error"]
    assert wrong.json()["code"] == "UNAUTHORIZED"


async def test_logout_revokes_the_token(world: World) -> None:
    headers = await world.login("user-a@example.com", "password-123")
    assert (await world.client.post("/api/v1/auth/logout", headers=headers)).status_code == 200
    after = await world.client.get("/api/v1/auth/me", headers=headers)
    assert after.status_code == 401


async def test_deactivated_user_is_refused_at_once(world: World) -> None:
    admin = world.headers["admin"]
    users = (await world.client.get("/api/v1/admin/users?search=user-a", headers=admin)).json()
    user_id = users["users"][0]["id"]
    patched = await world.client.patch(
        f"/api/v1/admin/users/{user_id}", json={"isActive": False}, headers=admin
    )
    assert patched.status_code == 200
    assert (
        await world.client.get("/api/v1/auth/me", headers=world.headers["user_a"])
    ).status_code == 401
    login = await world.client.post(
        "/api/v1/auth/login", json={"email": "user-a@example.com", "password": "password-123"}
    )
    assert login.status_code == 401


async def test_tokens_with_another_algorithm_or_key_are_refused(world: World) -> None:
    token = world.headers["admin"]["authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    forged_none = jwt.encode(claims, key=None, algorithm="none")
    forged_key = jwt.encode(claims, "some-other-key-of-enough-length-000", algorithm="HS256")
    for forged in (forged_none, forged_key, token + "x", "garbage"):
        response = await world.client.get(
            "/api/v1/auth/me", headers={"authorization": f"Bearer {forged}"}
        )
        assert response.status_code == 401, forged


async def test_api_key_authenticates_and_records_last_use(world: World) -> None:
    response = await world.client.get("/api/v1/auth/me", headers=world.headers["key_a"])
    assert response.status_code == 200
    assert response.json()["role"] == "API_KEY"
    assert response.json()["orgId"] == 100
    async with world.services.db.read() as conn:
        used = (
            await conn.execute(select(api_keys.c.last_used_at).where(api_keys.c.org_id == 100))
        ).scalar()
    assert used is not None


async def test_revoked_api_key_is_refused(world: World) -> None:
    admin = world.headers["admin"]
    keys = (await world.client.get("/api/v1/admin/api-keys?orgId=100", headers=admin)).json()
    key_id = keys["apiKeys"][0]["id"]
    revoked = await world.client.delete(f"/api/v1/admin/api-keys/{key_id}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revokedAt"] is not None
    assert (
        await world.client.get("/api/v1/auth/me", headers=world.headers["key_a"])
    ).status_code == 401
    listed = (await world.client.get("/api/v1/admin/api-keys?orgId=100", headers=admin)).json()
    assert listed["total"] == 0


async def test_missing_or_malformed_credentials_are_401(world: World) -> None:
    for headers in (
        {},
        {"authorization": "Basic abc"},
        {"x-api-key": "jbk_unknown"},
        {"x-api-key": "x"},
    ):
        response = await world.client.get("/api/v1/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"
