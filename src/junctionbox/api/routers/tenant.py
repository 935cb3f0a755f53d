"""``/api/v1/tenant``: the caller's tenant."""

from __future__ import annotations

from fastapi import APIRouter

from junctionbox.api.deps import ServicesDep, TenantDep
from junctionbox.api.routers.admin import OrgOut
from junctionbox.api.schemas import ApiModel

router = APIRouter(prefix="/api/v1", tags=["tenant"])


class TenantOut(ApiModel):
    org_id: int
    name: str
    is_unit: bool
    timezone: str | None
    organization: OrgOut
    unit_ids: list[int]


@router.get("/tenant", response_model=TenantOut, summary="The tenant this request acts for")
async def tenant_info(tenant: TenantDep, svc: ServicesDep) -> TenantOut:
    entity, org, units = await svc.tenancy.describe(tenant)
    return TenantOut(
        org_id=entity.id,
        name=entity.name,
        is_unit=entity.parent_id is not None,
        timezone=entity.timezone or org.timezone,
        organization=OrgOut.from_record(org),
        unit_ids=units,
    )
