"""``/api/v1/admin``: organizations, org units, users, API keys and the audit log (ADMIN)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import Field, field_validator

from junctionbox.api.deps import AdminDep, PageDep, ServicesDep
from junctionbox.api.schemas import (
    ApiModel,
    ProfileFields,
    RequestModel,
    UserOut,
    as_utc,
    check_email,
    check_timezone,
    page_body,
    paged,
)
from junctionbox.domain.identity import Role
from junctionbox.store.queries.entities import EntityRecord

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


# --- organizations and units ---


class OrgIn(ProfileFields):
    org_id: int | None = Field(None, ge=1, description="Numeric id; assigned when omitted.")


class UnitIn(ProfileFields):
    rid: int | None = Field(None, ge=1, description="Numeric id; assigned when omitted.")


class ProfilePatch(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    code: str | None = Field(None, max_length=64)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    address: str | None = Field(None, max_length=2000)
    tags: list[str] | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=64)
    timezone: str | None = None

    _tz = field_validator("timezone")(check_timezone)

    def changes(self) -> dict[str, Any]:
        values = self.model_dump(exclude_unset=True)
        if values.get("tags", []) is None:
            values["tags"] = []
        return values


class _ProfileOut(ApiModel):
    name: str
    code: str | None
    email: str | None
    phone: str | None
    address: str | None
    tags: list[str]
    region: str | None
    timezone: str | None
    created_at: datetime
    updated_at: datetime


class OrgOut(_ProfileOut):
    org_id: int

    @classmethod
    def from_record(cls, record: EntityRecord) -> OrgOut:
        return cls.model_validate({**vars(record), "org_id": record.id})


class UnitOut(_ProfileOut):
    rid: int
    org_id: int

    @classmethod
    def from_record(cls, record: EntityRecord) -> UnitOut:
        return cls.model_validate({**vars(record), "rid": record.id, "org_id": record.parent_id})


OrgPage = paged("organizations", OrgOut)
UnitPage = paged("units", UnitOut)
Search = Annotated[str | None, Query(max_length=200)]


@router.get("/orgs", response_model=OrgPage, summary="List organizations")
async def list_orgs(_: AdminDep, svc: ServicesDep, page: PageDep, search: Search = None) -> Any:
    found = await svc.tenancy.list(page, search=search)
    return page_body("organizations", found, OrgOut.from_record)


@router.post("/orgs", response_model=OrgOut, status_code=201, summary="Create an organization")
async def create_org(body: OrgIn, caller: AdminDep, svc: ServicesDep) -> OrgOut:
    profile = body.model_dump(exclude={"org_id"})
    record = await svc.tenancy.create(caller, profile, entity_id=body.org_id, parent_id=None)
    return OrgOut.from_record(record)


@router.get("/orgs/{org_id}", response_model=OrgOut, summary="Get an organization")
async def get_org(org_id: int, _: AdminDep, svc: ServicesDep) -> OrgOut:
    return OrgOut.from_record(await svc.tenancy.get(org_id, unit=False))


@router.patch("/orgs/{org_id}", response_model=OrgOut, summary="Update an organization")
@router.put("/orgs/{org_id}", response_model=OrgOut, include_in_schema=False)
async def update_org(org_id: int, body: ProfilePatch, caller: AdminDep, svc: ServicesDep) -> OrgOut:
    record = await svc.tenancy.update(caller, org_id, body.changes(), unit=False)
    return OrgOut.from_record(record)


@router.delete("/orgs/{org_id}", status_code=204, summary="Delete an empty organization")
async def delete_org(org_id: int, caller: AdminDep, svc: ServicesDep) -> Response:
    await svc.tenancy.delete(caller, org_id, unit=False)
    return Response(status_code=204)


@router.get("/orgs/{org_id}/units", response_model=UnitPage, summary="List an org's units")
async def list_units(
    org_id: int, _: AdminDep, svc: ServicesDep, page: PageDep, search: Search = None
) -> Any:
    found = await svc.tenancy.list(page, parent_id=org_id, search=search)
    return page_body("units", found, UnitOut.from_record)


@router.post(
    "/orgs/{org_id}/units", response_model=UnitOut, status_code=201, summary="Create an org unit"
)
async def create_unit(org_id: int, body: UnitIn, caller: AdminDep, svc: ServicesDep) -> UnitOut:
    profile = body.model_dump(exclude={"rid"})
    record = await svc.tenancy.create(caller, profile, entity_id=body.rid, parent_id=org_id)
    return UnitOut.from_record(record)


@router.get("/units/{rid}", response_model=UnitOut, summary="Get an org unit")
async def get_unit(rid: int, _: AdminDep, svc: ServicesDep) -> UnitOut:
    return UnitOut.from_record(await svc.tenancy.get(rid, unit=True))


@router.patch("/units/{rid}", response_model=UnitOut, summary="Update an org unit")
@router.put("/units/{rid}", response_model=UnitOut, include_in_schema=False)
async def update_unit(rid: int, body: ProfilePatch, caller: AdminDep, svc: ServicesDep) -> UnitOut:
    return UnitOut.from_record(await svc.tenancy.update(caller, rid, body.changes(), unit=True))


@router.delete("/units/{rid}", status_code=204, summary="Delete an org unit")
async def delete_unit(rid: int, caller: AdminDep, svc: ServicesDep) -> Response:
    await svc.tenancy.delete(caller, rid, unit=True)
    return Response(status_code=204)


# --- users ---


class UserIn(RequestModel):
    email: str = Field(max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.USER
    org_id: int | None = Field(None, ge=1)

    _email = field_validator("email")(check_email)


class UserPatch(RequestModel):
    email: str | None = Field(None, max_length=320)
    password: str | None = Field(None, min_length=8, max_length=1024)
    role: Role | None = None
    org_id: int | None = Field(None, ge=1)
    is_active: bool | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else check_email(value)


UserPage = paged("users", UserOut)


@router.get("/users", response_model=UserPage, summary="List users")
async def list_users(
    _: AdminDep,
    svc: ServicesDep,
    page: PageDep,
    org_id: Annotated[int | None, Query(alias="orgId")] = None,
    role: Role | None = None,
    search: Search = None,
) -> Any:
    found = await svc.users.list(page, org_id=org_id, role=role, search=search)
    return page_body("users", found, UserOut.model_validate)


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a user")
async def create_user(body: UserIn, caller: AdminDep, svc: ServicesDep) -> UserOut:
    record = await svc.users.create(
        caller, email=body.email, password=body.password, role=body.role, org_id=body.org_id
    )
    return UserOut.model_validate(record)


@router.get("/users/{user_id}", response_model=UserOut, summary="Get a user")
async def get_user(user_id: str, _: AdminDep, svc: ServicesDep) -> UserOut:
    return UserOut.model_validate(await svc.users.get(user_id))


@router.patch("/users/{user_id}", response_model=UserOut, summary="Update a user")
@router.put("/users/{user_id}", response_model=UserOut, include_in_schema=False)
async def update_user(user_id: str, body: UserPatch, caller: AdminDep, svc: ServicesDep) -> UserOut:
    changes = body.model_dump(exclude_unset=True)
    if "role" in changes and changes["role"] is not None:
        changes["role"] = changes["role"].value
    return UserOut.model_validate(await svc.users.update(caller, user_id, changes))


@router.delete("/users/{user_id}", status_code=204, summary="Delete a user")
async def delete_user(user_id: str, caller: AdminDep, svc: ServicesDep) -> Response:
    await svc.users.delete(caller, user_id)
    return Response(status_code=204)


# --- API keys ---


class ApiKeyIn(RequestModel):
    org_id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=200)


class ApiKeyOut(ApiModel):
    id: str
    name: str
    org_id: int
    prefix: str
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself. Shown only in this response: store it now.")


ApiKeyPage = paged("apiKeys", ApiKeyOut)


@router.post(
    "/api-keys", response_model=ApiKeyCreated, status_code=201, summary="Create an API key"
)
async def create_api_key(body: ApiKeyIn, caller: AdminDep, svc: ServicesDep) -> ApiKeyCreated:
    created = await svc.api_keys.create(caller, org_id=body.org_id, name=body.name)
    return ApiKeyCreated.model_validate({**vars(created.record), "key": created.key})


@router.get("/api-keys", response_model=ApiKeyPage, summary="List API keys (never the keys)")
async def list_api_keys(
    _: AdminDep,
    svc: ServicesDep,
    page: PageDep,
    org_id: Annotated[int | None, Query(alias="orgId")] = None,
    include_revoked: Annotated[bool, Query(alias="includeRevoked")] = False,
) -> Any:
    found = await svc.api_keys.list(page, org_id=org_id, include_revoked=include_revoked)
    return page_body("apiKeys", found, ApiKeyOut.model_validate)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, summary="Revoke an API key")
async def revoke_api_key(key_id: str, caller: AdminDep, svc: ServicesDep) -> ApiKeyOut:
    return ApiKeyOut.model_validate(await svc.api_keys.revoke(caller, key_id))


# --- audit log ---


class AuditOut(ApiModel):
    id: str
    actor_kind: str
    actor_id: str | None
    actor_email: str | None
    org_id: int | None
    action: str
    resource_type: str
    resource_id: str | None
    before: Any
    after: Any
    request_id: str | None
    created_at: datetime


AuditPage = paged("auditLogs", AuditOut)


@router.get("/audit-logs", response_model=AuditPage, summary="Search the audit log")
async def audit_logs(
    _: AdminDep,
    svc: ServicesDep,
    page: PageDep,
    org_id: Annotated[int | None, Query(alias="orgId")] = None,
    action: str | None = None,
    resource_type: Annotated[str | None, Query(alias="resourceType")] = None,
    actor_id: Annotated[str | None, Query(alias="actorId")] = None,
    start_date: Annotated[datetime | None, Query(alias="startDate")] = None,
    end_date: Annotated[datetime | None, Query(alias="endDate")] = None,
) -> Any:
    found = await svc.audit.list(
        page,
        org_ids=None if org_id is None else [org_id],
        action=action,
        resource_type=resource_type,
        actor_id=actor_id,
        since=as_utc(start_date),
        until=as_utc(end_date),
    )
    return page_body("auditLogs", found, AuditOut.model_validate)
