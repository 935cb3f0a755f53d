"""/api/v1/lookups: lookup tables for SIMPLE mappings' ``lookup`` transformer.

Entries belong to the tenant named by ``orgId`` (an organization or a unit); any principal of
the tenant may read and change them, and every change is audited. Import takes a CSV or .xlsx
upload (multipart field ``file``, or the raw file as the body) and is all or nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field
from starlette.datastructures import UploadFile

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, page_body, paged
from junctionbox.errors import (
    FieldProblem,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from junctionbox.services.lookups import (
    CSV_TYPE,
    MAX_DESCRIPTION,
    MAX_KEY,
    MAX_VALUE,
    XLSX_TYPE,
    FileFormat,
    ImportMode,
    ImportReport,
)
from junctionbox.store.queries.lookups import LookupRecord, TypeCount

router = APIRouter(prefix="/api/v1/lookups", tags=["lookups"])

LookupId = Annotated[str, Path(alias="lookupId", min_length=1, max_length=40)]
TypeQuery = Annotated[str | None, Query(alias="type", max_length=100)]
_RAW_TYPES = {
    CSV_TYPE,
    XLSX_TYPE,
    "application/csv",
    "text/plain",
    "application/octet-stream",
    "application/vnd.ms-excel",  # what some browsers call a .csv
}


# --- bodies ---


class LookupIn(RequestModel):
    lookup_type: str = Field(alias="type", min_length=1, max_length=100)
    key: str = Field(min_length=1, max_length=MAX_KEY)
    value: str = Field(min_length=1, max_length=MAX_VALUE)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class LookupPatch(RequestModel):
    lookup_type: str | None = Field(None, alias="type", min_length=1, max_length=100)
    key: str | None = Field(None, min_length=1, max_length=MAX_KEY)
    value: str | None = Field(None, min_length=1, max_length=MAX_VALUE)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)

    def changes(self) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        for name, alias in (("lookup_type", "type"), ("key", "key"), ("value", "value")):
            if name not in self.model_fields_set:
                continue
            value = getattr(self, name)
            if value is None:
                message = "must not be null"
                raise ValidationError(
                    f"{alias}: {message}", problems=[FieldProblem(("body", alias), message)]
                )
            changes[alias] = value
        if "description" in self.model_fields_set:
            changes["description"] = self.description
        return changes


# --- responses ---


class LookupOut(ApiModel):
    id: str
    org_id: int
    lookup_type: str = Field(alias="type")
    key: str
    value: str
    description: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: LookupRecord) -> LookupOut:
        return cls.model_validate({**vars(record), "lookup_type": record.type})


class TypeOut(ApiModel):
    lookup_type: str = Field(alias="type")
    count: int
    updated_at: datetime

    @classmethod
    def of(cls, found: TypeCount) -> TypeOut:
        return cls.model_validate(found)


class TypeList(ApiModel):
    types: list[TypeOut]


class ResolvedOut(ApiModel):
    lookup_type: str = Field(alias="type")
    key: str
    value: str | None
    found: bool


class DeletedOut(ApiModel):
    lookup_type: str = Field(alias="type")
    deleted: int


class ImportOut(ApiModel):
    types: list[str]
    mode: str
    rows: int = Field(description="Data rows in the file.")
    created: int
    updated: int
    deleted: int = Field(description="Entries removed by mode=replace.")

    @classmethod
    def of(cls, report: ImportReport) -> ImportOut:
        return cls.model_validate(report)


LookupPage = paged("lookups", LookupOut)

_IMPORT_BODY = {
    "required": True,
    "description": (
        "A CSV (UTF-8; comma, semicolon or tab) or .xlsx (first sheet) with a header row "
        "key,value[,description][,type], as multipart field `file` or as the raw body."
    ),
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        CSV_TYPE: {"schema": {"type": "string"}},
        XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}},
    },
}


# --- routes (fixed paths before /{lookupId}) ---


@router.get("", response_model=LookupPage, summary="List lookup entries")
async def list_lookups(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    lookup_type: TypeQuery = None,
    search: Annotated[
        str | None, Query(max_length=200, description="In key, value or description.")
    ] = None,
) -> Any:
    found = await svc.lookups.list(
        tenant, page, lookup_type=lookup_type or None, search=(search or "").strip() or None
    )
    return page_body("lookups", found, LookupOut.of)


@router.get("/types", response_model=TypeList, summary="The tenant's lookup types and sizes")
async def list_types(tenant: TenantDep, svc: ServicesDep) -> TypeList:
    return TypeList(types=[TypeOut.of(t) for t in await svc.lookups.types(tenant)])


@router.get(
    "/resolve",
    response_model=ResolvedOut,
    summary="Resolve a key as the lookup transformer does (cached; a unit inherits its org's)",
)
async def resolve(
    tenant: TenantDep,
    svc: ServicesDep,
    lookup_type: Annotated[str, Query(alias="type", min_length=1, max_length=100)],
    key: Annotated[str, Query(min_length=1, max_length=MAX_KEY)],
) -> ResolvedOut:
    value = (await svc.lookups.resolver(tenant.org_id)).resolve(lookup_type, key)
    return ResolvedOut.model_validate(
        {"type": lookup_type, "key": key, "value": value, "found": value is not None}
    )


@router.get(
    "/export",
    summary="Export entries as CSV or .xlsx (one type, or all with a type column)",
    response_class=Response,
    responses={
        200: {
            "description": "The file, ordered by type and key.",
            "content": {
                CSV_TYPE: {"schema": {"type": "string"}},
                XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def export_lookups(
    tenant: TenantDep,
    svc: ServicesDep,
    lookup_type: TypeQuery = None,
    fmt: Annotated[FileFormat, Query(alias="format")] = FileFormat.CSV,
) -> Response:
    exported = await svc.lookups.export(tenant, lookup_type or None, fmt)
    headers = {
        "content-disposition": f'attachment; filename="{exported.filename}"',
        "x-total-count": str(exported.rows),
        "cache-control": "no-store",
    }
    return Response(exported.data, media_type=exported.media_type, headers=headers)


@router.post(
    "/import",
    response_model=ImportOut,
    summary="Import a CSV or .xlsx table (all rows or none)",
    openapi_extra={"requestBody": _IMPORT_BODY},
)
async def import_lookups(
    request: Request,
    tenant: TenantDep,
    svc: ServicesDep,
    lookup_type: Annotated[
        str | None,
        Query(alias="type", max_length=100, description="Type of rows without a type cell."),
    ] = None,
    mode: Annotated[ImportMode, Query()] = ImportMode.MERGE,
) -> ImportOut:
    data, filename = await _upload(request, svc.lookups.import_max_bytes)
    report = await svc.lookups.import_file(
        tenant, data, filename=filename, lookup_type=lookup_type or None, mode=mode
    )
    return ImportOut.of(report)


@router.post("", response_model=LookupOut, status_code=201, summary="Create a lookup entry")
async def create_lookup(body: LookupIn, tenant: TenantDep, svc: ServicesDep) -> LookupOut:
    record = await svc.lookups.create(
        tenant,
        lookup_type=body.lookup_type,
        key=body.key,
        value=body.value,
        description=body.description,
    )
    return LookupOut.of(record)


@router.delete("", response_model=DeletedOut, summary="Delete every entry of one type")
async def delete_type(
    tenant: TenantDep,
    svc: ServicesDep,
    lookup_type: Annotated[str, Query(alias="type", min_length=1, max_length=100)],
) -> DeletedOut:
    deleted = await svc.lookups.delete_type(tenant, lookup_type)
    return DeletedOut.model_validate({"type": lookup_type, "deleted": deleted})


@router.get("/{lookupId}", response_model=LookupOut, summary="Get a lookup entry")
async def get_lookup(lookup_id: LookupId, tenant: TenantDep, svc: ServicesDep) -> LookupOut:
    return LookupOut.of(await svc.lookups.get(tenant, lookup_id))


@router.put("/{lookupId}", response_model=LookupOut, summary="Replace a lookup entry")
async def replace_lookup(
    lookup_id: LookupId, body: LookupIn, tenant: TenantDep, svc: ServicesDep
) -> LookupOut:
    changes = {
        "type": body.lookup_type,
        "key": body.key,
        "value": body.value,
        "description": body.description,
    }
    return LookupOut.of(await svc.lookups.update(tenant, lookup_id, changes))


@router.patch("/{lookupId}", response_model=LookupOut, summary="Change a lookup entry")
async def update_lookup(
    lookup_id: LookupId, body: LookupPatch, tenant: TenantDep, svc: ServicesDep
) -> LookupOut:
    return LookupOut.of(await svc.lookups.update(tenant, lookup_id, body.changes()))


@router.delete("/{lookupId}", status_code=204, summary="Delete a lookup entry")
async def delete_lookup(lookup_id: LookupId, tenant: TenantDep, svc: ServicesDep) -> Response:
    await svc.lookups.delete(tenant, lookup_id)
    return Response(status_code=204)


# --- upload ---


async def _upload(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The uploaded file's bytes and name: multipart field ``file``, or the raw body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _multipart_file(request, limit)
    if content_type not in _RAW_TYPES:
        raise UnsupportedMediaTypeError(
            "send the file as multipart/form-data (field file), text/csv or .xlsx"
        )
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise PayloadTooLargeError(f"the file is larger than {limit} bytes")
    return bytes(data), None


async def _multipart_file(request: Request, limit: int) -> tuple[bytes, str | None]:
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as exc:  # starlette's multipart parser errors: the body is malformed
        raise ValidationError(
            "the multipart body cannot be read",
            problems=[FieldProblem(("body",), "malformed multipart/form-data")],
        ) from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            message = "a file field named 'file' is required"
            raise ValidationError(message, problems=[FieldProblem(("body", "file"), message)])
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLargeError(f"the file is larger than {limit} bytes")
        return data, upload.filename
    finally:
        await form.close()
