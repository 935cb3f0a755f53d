"""The alert center and alert configuration (seed 003 "alert center notifications"):

* ``GET /api/v1/alerts``, ``POST /api/v1/alerts/{id}/acknowledge``;
* ``/api/v1/alert-rules`` and ``/api/v1/alert-channels`` (CRUD);
* ``GET /api/v1/admin/alerts`` and its acknowledge: the same alert center for ADMINs only
  (every ``/api/v1/admin`` route refuses other roles).

Tenant-scoped like every resource: a user acts for its organization (and sees its units),
an admin for the ``orgId`` it names, or, without one, for the platform (every tenant's
alerts; the platform's own rules and channels, e.g. WORKER_STOPPED).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query
from starlette.responses import Response

from junctionbox.api.deps import PageDep, PrincipalDep, ServicesDep, admin
from junctionbox.domain.identity import TenantContext
from junctionbox.services.alerting import alert_out, channel_out, rule_out
from junctionbox.store.tables import alert_channels, alert_rules

router = APIRouter(prefix="/api/v1", tags=["alerts"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["alerts"], dependencies=[Depends(admin)])
OrgQuery = Annotated[int | None, Query(alias="orgId", ge=1, description="Tenant to act for.")]
JsonBody = Annotated[dict[str, Any], Body()]


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_UTC_Z),
        status_code=status,
        media_type="application/json",
    )


async def _tenant(svc: Any, caller: Any, org_id: int | None) -> TenantContext | None:
    if org_id is None and caller.is_admin:
        return None
    return await svc.tenancy.resolve(caller, org_id)  # type: ignore[no-any-return]


@admin_router.get("/alerts", summary="The alert center of every tenant (ADMIN)")
@router.get("/alerts", summary="The alert center: alerts, newest first")
async def list_alerts(
    caller: PrincipalDep,
    svc: ServicesDep,
    page: PageDep,
    org_id: OrgQuery = None,
    acknowledged: bool | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    rows, total = await svc.alerting.alerts(tenant, page, acknowledged=acknowledged, kind=kind)
    return _json(
        {
            "data": [alert_out(r) for r in rows],
            "total": total,
            "page": page.page,
            "limit": page.limit,
            "hasMore": page.offset + len(rows) < total,
        }
    )


@admin_router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert (ADMIN)")
@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert")
async def acknowledge(
    alert_id: str, caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    return _json(alert_out(await svc.alerting.acknowledge(tenant, alert_id)))


@router.get("/alert-rules", summary="Alert rules")
async def list_rules(caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    return _json({"data": [rule_out(r) for r in await svc.alerting.rows(alert_rules, tenant)]})


@router.post("/alert-rules", status_code=201, summary="Create an alert rule")
async def create_rule(
    body: JsonBody, caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    return _json(rule_out(await svc.alerting.create_rule(tenant, body)), 201)


@router.patch("/alert-rules/{rule_id}", summary="Change an alert rule")
async def update_rule(
    rule_id: str, body: JsonBody, caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    return _json(rule_out(await svc.alerting.update_rule(tenant, rule_id, body)))


@router.delete("/alert-rules/{rule_id}", status_code=204, summary="Delete an alert rule")
async def delete_rule(
    rule_id: str, caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    await svc.alerting.delete(alert_rules, await _tenant(svc, caller, org_id), rule_id)
    return Response(status_code=204)


@router.get("/alert-channels", summary="Alert channels (secrets masked)")
async def list_channels(
    caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    return _json(
        {"data": [channel_out(r) for r in await svc.alerting.rows(alert_channels, tenant)]}
    )


@router.post("/alert-channels", status_code=201, summary="Create an e-mail or webhook channel")
async def create_channel(
    body: JsonBody, caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    return _json(channel_out(await svc.alerting.create_channel(tenant, body)), 201)


@router.patch(
    "/alert-channels/{channel_id}",
    summary="Change a channel",
    description=(
        "The fields given replace the stored ones (the type cannot change). `secret`: leave it "
        "out or send `****` back to keep it, `null` to remove it, a new value to replace it."
    ),
)
async def update_channel(
    channel_id: str, body: JsonBody, caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    tenant = await _tenant(svc, caller, org_id)
    return _json(channel_out(await svc.alerting.update_channel(tenant, channel_id, body)))


@router.delete("/alert-channels/{channel_id}", status_code=204, summary="Delete a channel")
async def delete_channel(
    channel_id: str, caller: PrincipalDep, svc: ServicesDep, org_id: OrgQuery = None
) -> Response:
    await svc.alerting.delete(alert_channels, await _tenant(svc, caller, org_id), channel_id)
    return Response(status_code=204)
