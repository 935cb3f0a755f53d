"""Scheduled jobs (fetch → transform → deliver on a schedule): list, create and edit with the
problems beside the fields, test the data source (htmx), execute now, pause/resume, delete,
and the run history with each run's stage log.

Every call goes to ``ScheduledJobService`` with the tenant of the session, as the API does:
another organization's job answers 404 and SQL data sources need the ADMIN role.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.forms import pretty
from junctionbox.console.job_forms import JOB_FIELDS, job_body, job_values, source_body
from junctionbox.console.web import (
    PREFIX,
    ConsoleRoute,
    Ctx,
    context,
    problems_by_field,
    redirect,
    render,
)
from junctionbox.domain.outbound import AuthType
from junctionbox.errors import JunctionboxError, ValidationError
from junctionbox.services.scheduled_jobs import RUN_STATUSES, StoredJob

router = APIRouter(prefix=f"{PREFIX}/jobs", route_class=ConsoleRoute)
OPTIONS = {
    "methods": ("POST", "PUT", "PATCH"),
    "source_methods": ("GET", "POST", "PUT", "PATCH"),
    "schedule_types": ("CRON", "INTERVAL"),
    "catch_ups": ("ONCE", "ALL", "SKIP"),
    "source_types": ("API", "SQL"),
    "modes": ("", "JSONATA", "SCRIPT"),
    "auth_types": tuple(t.value for t in AuthType),
}
NEW_JOB = {
    "httpMethod": "POST",
    "schedule.type": "CRON",
    "schedule.expression": "0 * * * *",
    "schedule.catchUp": "ONCE",
    "dataSource.type": "API",
    "dataSource.method": "GET",
    "outgoingAuthType": "NONE",
}


def _submitted(ctx: Ctx) -> dict[str, str]:
    return {key: ctx.field(key) for key in JOB_FIELDS}


def _form(ctx: Ctx, values: dict[str, str], errors: dict[str, str], job: Any) -> Response:
    return render(
        ctx, "jobs/form.html", 400 if errors else 200, values=values, errors=errors, job=job,
        **OPTIONS,
    )  # fmt: skip


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    chosen = ctx.query("status")
    active = {"active": True, "paused": False}.get(chosen)
    page = await ctx.svc.scheduled_jobs.list(ctx.require_tenant(), active, ctx.page())
    return render(ctx, "jobs/list.html", page=page, chosen=chosen, flash=ctx.query("flash"))


@router.get("/new")
async def new(request: Request) -> Response:
    ctx = await context(request)
    ctx.require_tenant()
    return _form(ctx, dict(NEW_JOB), {}, None)


@router.post("/new")
async def create(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    values = _submitted(ctx)
    body, errors = job_body(values)
    if not errors:
        body["isActive"] = ctx.field("isActive") == "on"
        try:
            job = await ctx.svc.scheduled_jobs.create(tenant, body)
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return redirect(ctx, ctx.url(f"/jobs/{job.record.id}", flash="Created."))
    return _form(ctx, values, errors, None)


@router.post("/test-source")
async def test_source(request: Request) -> Response:
    """The form's data source run now: up to 10 records, or the error (nothing delivered)."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    problems: dict[str, str] = {}
    source = source_body(_submitted(ctx), problems)
    if problems:
        error = "; ".join(f"{k}: {v}" for k, v in problems.items())
        return render(ctx, "jobs/source_result.html", result=None, error=error)
    job_id = ctx.field("jobId")
    if job_id and source.get("type") == "SQL" and "connectionString" in source:
        # A masked connection string stands for the stored one, as on save.
        stored = await ctx.svc.scheduled_jobs.get(tenant, job_id)
        if source["connectionString"] == stored.view()["dataSource"].get("connectionString"):
            source["connectionString"] = stored.secrets.connection_string
    try:
        result = await ctx.svc.scheduled_jobs.test_source(
            tenant, source, ctx.field("schedule.timezone") or None
        )
    except JunctionboxError as exc:
        return render(ctx, "jobs/source_result.html", result=None, error=_explain(exc))
    return render(ctx, "jobs/source_result.html", result=result, error=None, pretty=pretty)


@router.get("/{job_id}")
async def detail(request: Request, job_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    job = await ctx.svc.scheduled_jobs.get(tenant, job_id)
    status = ctx.query("status")
    if status and status not in RUN_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(RUN_STATUSES)}")
    runs = await ctx.svc.scheduled_jobs.runs(tenant, job_id, status or None, ctx.page())
    view = job.view()
    return render(
        ctx, "jobs/detail.html", job=job, view=view, document=pretty(view), runs=runs,
        statuses=RUN_STATUSES, chosen=status, flash=ctx.query("flash"),
    )  # fmt: skip


@router.get("/{job_id}/edit")
async def edit(request: Request, job_id: str) -> Response:
    ctx = await context(request)
    job = await ctx.svc.scheduled_jobs.get(ctx.require_tenant(), job_id)
    return _form(ctx, job_values(job.view()), {}, job)


@router.post("/{job_id}/edit")
async def update(request: Request, job_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    job: StoredJob = await ctx.svc.scheduled_jobs.get(tenant, job_id)
    values = _submitted(ctx)
    body, errors = job_body(values)
    if not errors:
        body["isActive"] = job.record.is_active  # pause/resume has its own button
        try:
            await ctx.svc.scheduled_jobs.update(tenant, job_id, body, partial=False)
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return redirect(ctx, ctx.url(f"/jobs/{job_id}", flash="Saved."))
    return _form(ctx, values, errors, job)


@router.post("/{job_id}/active")
async def set_active(request: Request, job_id: str) -> Response:
    ctx = await context(request)
    active = ctx.field("active") == "true"
    await ctx.svc.scheduled_jobs.set_active(ctx.require_tenant(), job_id, active)
    message = "Resumed from the next tick." if active else "Paused."
    return redirect(ctx, ctx.url(f"/jobs/{job_id}", flash=message))


@router.post("/{job_id}/execute")
async def execute(request: Request, job_id: str) -> Response:
    ctx = await context(request)
    run = await ctx.svc.scheduled_jobs.execute_now(ctx.require_tenant(), job_id)
    return redirect(ctx, ctx.url(f"/jobs/{job_id}/runs/{run.id}", flash="Queued."))


@router.post("/{job_id}/delete")
async def delete(request: Request, job_id: str) -> Response:
    ctx = await context(request)
    if ctx.field("confirm") != "yes":
        raise ValidationError("confirm the deletion (the run history goes with the job)")
    await ctx.svc.scheduled_jobs.delete(ctx.require_tenant(), job_id)
    return redirect(ctx, ctx.url("/jobs", flash=f"Deleted {job_id}."))


@router.get("/{job_id}/runs/{run_id}")
async def run(request: Request, job_id: str, run_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    job = await ctx.svc.scheduled_jobs.get(tenant, job_id)
    found = await ctx.svc.scheduled_jobs.run(tenant, job_id, run_id)
    template = "jobs/run_body.html" if request.headers.get("hx-request") else "jobs/run.html"
    return render(ctx, template, job=job, run=found, pretty=pretty, flash=ctx.query("flash"))


def _explain(exc: JunctionboxError) -> str:
    details = "; ".join(
        f"{'.'.join(str(p) for p in problem.loc)}: {problem.message}" for problem in exc.problems
    )
    return exc.message + (f" ({details})" if details and details not in exc.message else "")
