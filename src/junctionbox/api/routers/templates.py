"""``/api/v1/templates``: built-in starting points for outbound integrations (seed 003).

A template's ``body`` can be POSTed to ``/api/v1/outbound-integrations`` as it is; replace
the fields listed in ``placeholders`` first. Any authenticated caller may read them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from junctionbox.api.deps import PageDep, PrincipalDep
from junctionbox.api.schemas import ApiModel, page_body, paged
from junctionbox.domain.paging import Page
from junctionbox.domain.templates import CATALOGUE, Template, find_template
from junctionbox.errors import NotFoundError

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])

TemplateId = Annotated[str, Path(alias="id", min_length=1, max_length=100)]


class PlaceholderOut(ApiModel):
    field: str = Field(description="Dot path in the body to replace.")
    description: str


class TemplateSummaryOut(ApiModel):
    id: str
    name: str
    category: str
    description: str
    event_type: str
    transformation_mode: str | None
    outgoing_auth_type: str
    scheduling_mode: str

    @classmethod
    def of(cls, template: Template) -> TemplateSummaryOut:
        body = template.body
        return cls(
            id=template.id,
            name=template.name,
            category=template.category,
            description=template.description,
            event_type=str(body["eventType"]),
            transformation_mode=body.get("transformationMode"),
            outgoing_auth_type=str(body.get("outgoingAuthType", "NONE")),
            scheduling_mode=str(body.get("schedulingMode", "IMMEDIATE")),
        )


class TemplateOut(TemplateSummaryOut):
    body: dict[str, Any] = Field(
        description="A ready-to-POST /api/v1/outbound-integrations request body."
    )
    placeholders: list[PlaceholderOut]
    sample_event: dict[str, Any] = Field(
        description="An event to try it with: POST /api/v1/outbound-integrations/{id}/test."
    )

    @classmethod
    def full(cls, template: Template) -> TemplateOut:
        return cls.model_validate(
            {
                **TemplateSummaryOut.of(template).model_dump(),
                "body": template.request_body(),
                "placeholders": [
                    PlaceholderOut(field=p.field, description=p.description)
                    for p in template.placeholders
                ],
                "sample_event": dict(template.sample_event),
            }
        )


TemplatePage = paged("templates", TemplateSummaryOut)


@router.get("", response_model=TemplatePage, summary="List integration templates")
async def list_templates(
    _caller: PrincipalDep,
    page: PageDep,
    category: Annotated[
        str | None, Query(max_length=50, description="webhook, chat, crm, ...")
    ] = None,
) -> Any:
    chosen = [t for t in CATALOGUE.values() if category is None or t.category == category]
    items = chosen[page.offset : page.offset + page.limit]
    return page_body("templates", Page(items, len(chosen), page), TemplateSummaryOut.of)


@router.get("/{id}", response_model=TemplateOut, summary="A template with its request body")
async def get_template(template_id: TemplateId, _caller: PrincipalDep) -> TemplateOut:
    template = find_template(template_id)
    if template is None:
        raise NotFoundError("template not found")
    return TemplateOut.full(template)
