"""Request dependencies: the service container, the caller, the tenant and role checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.datastructures import Headers

from junctionbox.domain.identity import Principal, TenantContext
from junctionbox.domain.paging import MAX_LIMIT, PageRequest
from junctionbox.errors import ForbiddenError, UnauthorizedError
from junctionbox.observability import context
from junctionbox.services.container import Services

# The largest id both databases store (a signed 64-bit integer): a larger orgId is refused
# (400) rather than failing in the driver (500).
MAX_ORG_ID = 2**63 - 1

# Dependencies are ``async def`` even when they do not await: FastAPI runs plain functions
# in its thread pool, a hand-over that costs more than the work on every request.


async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]


def bearer_token(request: Request) -> str | None:
    return bearer_in(request.headers)


def bearer_in(headers: Headers) -> str | None:
    return bearer_of(headers.get("authorization"))


def bearer_of(authorization: str | bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (raw bytes or text)."""
    if not authorization:
        return None
    text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, token = text.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def principal(request: Request, svc: ServicesDep) -> Principal:
    return await authenticate(svc, request.headers)


async def authenticate(svc: Services, headers: Headers) -> Principal:
    """The caller of a request with these headers (``X-API-Key`` or a Bearer token); what
    ``principal`` resolves, for the ASGI fast paths that have no ``Request``."""
    return await authenticate_with(svc, headers.get("x-api-key"), bearer_in(headers))


async def authenticate_with(svc: Services, api_key: str | None, token: str | None) -> Principal:
    """The caller presenting this API key or (without one) this Bearer token."""
    if api_key:
        found = await svc.auth.authenticate_api_key(api_key)
    elif token:
        found = await svc.auth.authenticate_token(token)
    else:
        raise UnauthorizedError(
            "missing credentials: send Authorization: Bearer <token> or X-API-Key",
            headers={"www-authenticate": "Bearer"},
        )
    context.bind(principal_id=found.id)
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


async def admin(caller: PrincipalDep) -> Principal:
    if not caller.is_admin:
        raise ForbiddenError("this operation needs the ADMIN role")
    return caller


AdminDep = Annotated[Principal, Depends(admin)]


async def tenant(
    caller: PrincipalDep,
    svc: ServicesDep,
    org_id: Annotated[
        int | None, Query(alias="orgId", ge=1, le=MAX_ORG_ID, description="Tenant to act for.")
    ] = None,
) -> TenantContext:
    return await svc.tenancy.resolve(caller, org_id)


TenantDep = Annotated[TenantContext, Depends(tenant)]


async def request_tenant(
    request: Request,
    org_id: Annotated[
        int | None, Query(alias="orgId", ge=1, le=MAX_ORG_ID, description="Tenant to act for.")
    ] = None,
) -> TenantContext:
    """``tenant`` as one dependency rather than three, for the hottest routes (publishing):
    FastAPI's cost per dependency is a good part of a small request's."""
    svc: Services = request.app.state.services
    return await svc.tenancy.resolve(await principal(request, svc), org_id)


RequestTenantDep = Annotated[TenantContext, Depends(request_tenant)]


async def page_request(
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> PageRequest:
    return PageRequest(page, limit)


PageDep = Annotated[PageRequest, Depends(page_request)]
