"""Administration (ADMIN only; every route refuses a USER with 403): organizations and
units, users, API keys (the key is shown once, at creation) and the audit log."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.web import (
    PREFIX,
    ConsoleRoute,
    Ctx,
    context,
    problems_by_field,
    redirect,
    render,
)
from junctionbox.domain.identity import Role
from junctionbox.domain.paging import PageRequest
from junctionbox.errors import ConflictError, NotFoundError, ValidationError

router = APIRouter(prefix=f"{PREFIX}/admin", route_class=ConsoleRoute)


async def admin_context(request: Request) -> Ctx:
    ctx = await context(request)
    ctx.require_admin()
    return ctx


def _entity_profile(ctx: Ctx) -> dict[str, str | None]:
    name = ctx.field("name")
    if not name or len(name) > 200:
        raise ValidationError("name: 1 to 200 characters", problems=())
    timezone = ctx.field("timezone") or None
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError(f"timezone: unknown time zone {timezone!r}") from exc
    return {"name": name, "timezone": timezone}


def _optional_id(ctx: Ctx, name: str) -> int | None:
    raw = ctx.field(name)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationError(f"{name}: must be a positive whole number")
    return int(raw)


# --- organizations and units ---


@router.get("/orgs")
async def orgs(request: Request) -> Response:
    ctx = await admin_context(request)
    page = await ctx.svc.tenancy.list(ctx.page(50), search=ctx.query("search") or None)
    return render(ctx, "admin/orgs.html", page=page, flash=ctx.query("flash"), error=None)


@router.post("/orgs")
async def create_org(request: Request) -> Response:
    ctx = await admin_context(request)
    parent = _optional_id(ctx, "parentId")
    try:
        record = await ctx.svc.tenancy.create(
            ctx.principal,  # type: ignore[arg-type]
            _entity_profile(ctx),
            entity_id=_optional_id(ctx, "id"),
            parent_id=parent,
        )
    except (ValidationError, ConflictError, NotFoundError) as exc:
        page = await ctx.svc.tenancy.list(ctx.page(50))
        return render(ctx, "admin/orgs.html", exc.status, page=page, flash=None, error=exc.message)
    kind = "Unit" if parent else "Organization"
    return redirect(ctx, ctx.url("/admin/orgs", flash=f"{kind} {record.id} {record.name} created."))


@router.post("/orgs/{entity_id}")
async def update_org(request: Request, entity_id: int) -> Response:
    ctx = await admin_context(request)
    unit = ctx.field("unit") == "true"
    await ctx.svc.tenancy.update(
        ctx.principal,  # type: ignore[arg-type]
        entity_id,
        _entity_profile(ctx),
        unit=unit,
    )
    return redirect(ctx, ctx.url("/admin/orgs", flash=f"{entity_id} saved."))


# --- users ---


async def _users_page(ctx: Ctx, status: int = 200, **extra: object) -> Response:
    raw = ctx.query("orgId")
    page = await ctx.svc.users.list(
        ctx.page(50), org_id=int(raw) if raw.isdigit() else None, search=ctx.query("search") or None
    )
    extra.setdefault("errors", {})
    extra.setdefault("values", {"email": "", "role": "USER", "orgId": ""})
    return render(ctx, "admin/users.html", status, page=page, flash=ctx.query("flash"), **extra)


@router.get("/users")
async def users(request: Request) -> Response:
    return await _users_page(await admin_context(request))


@router.post("/users")
async def create_user(request: Request) -> Response:
    ctx = await admin_context(request)
    values = {
        "email": ctx.field("email").lower(),
        "role": ctx.field("role"),
        "orgId": ctx.field("orgId"),
    }
    try:
        if values["role"] not in (Role.ADMIN.value, Role.USER.value):
            raise ValidationError("role must be ADMIN or USER", problems=())
        if "@" not in values["email"]:
            raise ValidationError("email: not an email address")
        org_id = _optional_id(ctx, "orgId") if values["role"] == Role.USER.value else None
        await ctx.svc.users.create(
            ctx.principal,
            email=values["email"],
            password=ctx.secret_field("password"),
            role=Role(values["role"]),
            org_id=org_id,
        )
    except (ValidationError, ConflictError, NotFoundError) as exc:
        errors = problems_by_field(exc) or {"_": exc.message}
        return await _users_page(ctx, exc.status, errors=errors, values=values)
    return redirect(ctx, ctx.url("/admin/users", flash=f"User {values['email']} created."))


@router.post("/users/{user_id}")
async def update_user(request: Request, user_id: str) -> Response:
    """Enable/disable or set a new password; either ends the user's console sessions and
    (disable) their API tokens."""
    ctx = await admin_context(request)
    action = ctx.field("action")
    if action in ("enable", "disable"):
        if action == "disable" and user_id == ctx.principal.id:  # type: ignore[union-attr]
            raise ConflictError("you cannot disable your own account")
        changes: dict[str, object] = {"is_active": action == "enable"}
    elif action == "password":
        changes = {"password": ctx.secret_field("password")}
    elif action == "role":
        role = ctx.field("role")
        if role not in (Role.ADMIN.value, Role.USER.value):
            raise ValidationError("role must be ADMIN or USER")
        changes = {"role": role, "org_id": _optional_id(ctx, "orgId")}
    elif action == "delete":
        await ctx.svc.users.delete(ctx.principal, user_id)  # type: ignore[arg-type]
        return redirect(ctx, ctx.url("/admin/users", flash="User deleted."))
    else:
        raise ValidationError("action must be enable, disable, password, role or delete")
    record = await ctx.svc.users.update(ctx.principal, user_id, changes)  # type: ignore[arg-type]
    return redirect(ctx, ctx.url("/admin/users", flash=f"User {record.email} updated."))


# --- API keys ---


@router.get("/api-keys")
async def api_keys(request: Request) -> Response:
    ctx = await admin_context(request)
    page = await ctx.svc.api_keys.list(ctx.page(50), include_revoked=True)
    return render(ctx, "admin/api_keys.html", page=page, flash=ctx.query("flash"), created=None)


@router.post("/api-keys")
async def create_key(request: Request) -> Response:
    ctx = await admin_context(request)
    org_id = _optional_id(ctx, "orgId")
    name = ctx.field("name")
    if org_id is None or not name:
        raise ValidationError("an organization id and a name are required")
    created = await ctx.svc.api_keys.create(ctx.principal, org_id=org_id, name=name[:200])
    page = await ctx.svc.api_keys.list(PageRequest(1, 50), include_revoked=True)
    # The key is in this response only: it is stored as a hash.
    response = render(ctx, "admin/api_keys.html", 201, page=page, flash=None, created=created)
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/api-keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    ctx = await admin_context(request)
    await ctx.svc.api_keys.revoke(ctx.principal, key_id)  # type: ignore[arg-type]
    return redirect(ctx, ctx.url("/admin/api-keys", flash=f"Key {key_id} revoked."))


# --- audit log ---


@router.get("/audit")
async def audit(request: Request) -> Response:
    ctx = await admin_context(request)
    raw = ctx.query("orgId")
    page = await ctx.svc.audit.list(
        ctx.page(50),
        org_ids=[int(raw)] if raw.isdigit() else None,
        action=ctx.query("action") or None,
        resource_type=ctx.query("resourceType") or None,
        actor_id=ctx.query("actorId") or None,
    )
    return render(ctx, "admin/audit.html", page=page)
