"""Scheduled jobs (seed 003 SCHEDULED): configuration, ticks, runs and their logs.

* **Configuration.** Create, read, replace (PUT), merge (PATCH), delete, pause and resume,
  per tenant (the job belongs to the entity the request acts for; others answer 404).
  Credentials (outgoing auth secrets, ``dataSource.connectionString``) are sealed with the
  SecretBox and masked in every response; a masked value sent back keeps the stored one.
  SQL data sources reach databases (the gateway's own, or the platform's network), so
  creating, changing or testing one needs the ADMIN role; API sources go through the
  SSRF-guarded client and need no more than the tenant's other resources.
* **Ticks.** :meth:`schedule_due` (the scheduler loop, on every node) reads the due jobs and,
  per job, in one transaction: moves ``next_run_at`` with a compare-and-set
  (``store.queries.scheduled_jobs.advance``), inserts the run row (unique per job and tick)
  and enqueues its queue job (dedupe key ``sjob:<job>:<tick>``). Only the node whose
  compare-and-set succeeded does the rest, so each tick runs once however many nodes look.
  Missed ticks follow the job's ``catchUp`` (``domain.job_timing``). Pausing stops ticks;
  resuming (or changing the schedule) starts again from the next tick after now, with no
  catch-up for the paused time.
* **Runs.** A queue job per run, executed by :class:`ScheduledJobWorker`. Execute-now
  queues a MANUAL run the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from junctionbox.connectors.job_sources import sample
from junctionbox.connectors.sql_source import masked as masked_connection
from junctionbox.connectors.sql_source import normalize_url
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.job_config import (
    JobConfig,
    JobSecrets,
    SourceType,
    job_document,
    parse_job,
    parse_source,
    with_job_secrets,
)
from junctionbox.domain.job_timing import JobSchedule, plan
from junctionbox.domain.job_variables import VariableContext, check_refs
from junctionbox.domain.netguard import (
    REFUSED_MESSAGE,
    Allowlist,
    refused_without_dns,
)
from junctionbox.domain.outbound import masked_auth_config, restore_masked
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.schedule import ScheduleError, resolve_zone
from junctionbox.domain.secretbox import SecretBox
from junctionbox.errors import (
    ConflictError,
    FieldProblem,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from junctionbox.expr import DEFAULT_LIMITS, Limits, compile_transformer
from junctionbox.queue.jobs import Job, NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services import audit
from junctionbox.services.outgoing_auth import validate_auth
from junctionbox.services.scheduled_job_runs import JobRunner, RunInput, RunLog, error_context
from junctionbox.store.database import Database
from junctionbox.store.queries import entities
from junctionbox.store.queries import scheduled_jobs as queries
from junctionbox.store.queries.scheduled_jobs import JobRecord, RunRecord
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

JOB_KIND: Final = "scheduled_job.run"
JOB_QUEUE: Final = "scheduled-jobs"
# Claims of one run: the first, and re-claims after a crash, which mark it failed (the
# worker does not re-run a run that may have delivered already; see the worker).
QUEUE_ATTEMPTS: Final = 3
TEST_SAMPLE: Final = 10
DUE_BATCH: Final = 100
SCHEDULE, MANUAL = "SCHEDULE", "MANUAL"
QUEUED, RUNNING, CANCELLED = "QUEUED", "RUNNING", "CANCELLED"
RUN_STATUSES: Final = ("QUEUED", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")
_OMITTED: Final = object()


@dataclass(frozen=True)
class StoredJob:
    record: JobRecord
    config: JobConfig
    secrets: JobSecrets

    @property
    def schedule(self) -> JobSchedule:
        spec = self.config.schedule
        return JobSchedule(
            spec.type, spec.expression, spec.interval_ms, self.record.timezone, spec.catch_up
        )

    def view(self) -> dict[str, Any]:
        """The API form: the document with credentials masked, plus the store's fields."""
        document = job_document(self.config)
        document["outgoingAuthConfig"] = masked_auth_config(self.config.auth)
        if self.secrets.connection_string is not None:
            document["dataSource"]["connectionString"] = masked_connection(
                self.secrets.connection_string
            )
        document["schedule"]["effectiveTimezone"] = self.record.timezone
        record = self.record
        return {
            "id": record.id,
            "orgId": record.org_id,
            **document,
            "isActive": record.is_active,
            "nextRunAt": record.next_run_at if record.is_active else None,
            "lastRunAt": record.last_run_at,
            "lastStatus": record.last_status,
            "version": record.version,
            "createdBy": record.created_by,
            "createdAt": record.created_at,
            "updatedAt": record.updated_at,
        }


@dataclass(frozen=True)
class SourceTest:
    records: int
    sample: Any
    duration_ms: int


class ScheduledJobService:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        secretbox: SecretBox,
        runner: JobRunner,
        *,
        env: Mapping[str, str],
        max_rows: int,
        allowlist: Allowlist | None = None,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.allowlist = allowlist or Allowlist()
        self.queue = queue
        self.secretbox = secretbox
        self.runner = runner
        self.env = dict(env)
        self.max_rows = max_rows
        self.limits = limits
        self.clock = clock

    # --- configuration ---

    async def create(self, tenant: TenantContext, body: Mapping[str, Any]) -> StoredJob:
        config, secrets = self._validate(tenant, body)
        now = self.clock()
        job_id = new_id("sjb")
        async with self.db.write() as conn:
            if await queries.name_taken(conn, tenant.org_id, config.name, None):
                raise ConflictError(f"a scheduled job named {config.name!r} exists already")
            zone = await self._zone(conn, tenant, config)
            schedule = _schedule_of(config, zone)
            values = {
                "id": job_id,
                "org_id": tenant.org_id,
                "name": config.name,
                "is_active": config.is_active,
                "config": job_document(config),
                "secrets": self._seal(job_id, secrets),
                "timezone": zone,
                "next_run_at": schedule.first_after(now) if config.is_active else None,
                "last_run_at": None,
                "last_status": None,
                "version": 1,
                "created_by": tenant.principal.email or tenant.principal.id,
                "created_at": now,
                "updated_at": now,
            }
            await queries.insert_job(conn, values)
            await audit.record(
                conn,
                tenant.principal,
                "scheduled_job.create",
                "scheduled_job",
                job_id,
                org_id=tenant.org_id,
                after={"name": config.name},
            )
        return await self.get(tenant, job_id)

    async def get(self, tenant: TenantContext, job_id: str) -> StoredJob:
        async with self.db.read() as conn:
            record = await queries.get_job(conn, job_id, [tenant.org_id])
        if record is None:
            raise NotFoundError(f"scheduled job {job_id} not found")
        return self._stored(record)

    async def list(
        self, tenant: TenantContext, is_active: bool | None, page: PageRequest
    ) -> Page[StoredJob]:
        async with self.db.read() as conn:
            records, total = await queries.list_jobs(conn, [tenant.org_id], is_active, page)
        return Page([self._stored(r) for r in records], total, page)

    async def update(
        self, tenant: TenantContext, job_id: str, body: Mapping[str, Any], *, partial: bool
    ) -> StoredJob:
        """PUT (``partial=False``) replaces the configuration; PATCH merges top-level fields."""
        current = await self.get(tenant, job_id)
        merged = self._with_stored_secrets(current, body, partial=partial)
        config, secrets = self._validate(tenant, merged)
        now = self.clock()
        async with self.db.write() as conn:
            if await queries.name_taken(conn, tenant.org_id, config.name, job_id):
                raise ConflictError(f"a scheduled job named {config.name!r} exists already")
            zone = await self._zone(conn, tenant, config)
            values: dict[str, Any] = {
                "name": config.name,
                "is_active": config.is_active,
                "config": job_document(config),
                "secrets": self._seal(job_id, secrets),
                "timezone": zone,
                "updated_at": now,
            }
            reschedule = (
                config.schedule != current.config.schedule
                or zone != current.record.timezone
                or config.is_active != current.record.is_active
            )
            if reschedule:
                next_run = _schedule_of(config, zone).first_after(now)
                values["next_run_at"] = next_run if config.is_active else None
            changed = await queries.update_job(
                conn, job_id, tenant.org_id, current.record.version, values
            )
            if not changed:
                raise ConflictError("the scheduled job changed meanwhile; read it and retry")
            await audit.record(
                conn,
                tenant.principal,
                "scheduled_job.update",
                "scheduled_job",
                job_id,
                org_id=tenant.org_id,
                before={"version": current.record.version},
                after={"version": current.record.version + 1},
            )
        return await self.get(tenant, job_id)

    async def set_active(self, tenant: TenantContext, job_id: str, active: bool) -> StoredJob:
        """Pause (no more ticks; queued runs still run) or resume (from the next tick)."""
        current = await self.get(tenant, job_id)
        if current.record.is_active == active:
            return current
        now = self.clock()
        document = {**current.record.config, "isActive": active}
        values = {
            "is_active": active,
            "config": document,
            "next_run_at": current.schedule.first_after(now) if active else None,
            "updated_at": now,
        }
        async with self.db.write() as conn:
            if not await queries.update_job(
                conn, job_id, tenant.org_id, current.record.version, values
            ):
                raise ConflictError("the scheduled job changed meanwhile; retry")
            await audit.record(
                conn,
                tenant.principal,
                "scheduled_job.resume" if active else "scheduled_job.pause",
                "scheduled_job",
                job_id,
                org_id=tenant.org_id,
            )
        return await self.get(tenant, job_id)

    async def delete(self, tenant: TenantContext, job_id: str) -> None:
        """Delete the job and its run history; queued runs find it gone and end."""
        async with self.db.write() as conn:
            if not await queries.delete_job(conn, job_id, tenant.org_id):
                raise NotFoundError(f"scheduled job {job_id} not found")
            await audit.record(
                conn,
                tenant.principal,
                "scheduled_job.delete",
                "scheduled_job",
                job_id,
                org_id=tenant.org_id,
            )

    # --- runs ---

    async def execute_now(self, tenant: TenantContext, job_id: str) -> RunRecord:
        """Queue a MANUAL run at once (paused jobs too: it is an explicit request)."""
        stored = await self.get(tenant, job_id)
        run_id = new_id("sjr")
        now = self.clock()
        async with self.db.write() as conn:
            await self._enqueue_run(conn, stored.record, MANUAL, now, f"manual:{run_id}", run_id)
            await audit.record(
                conn,
                tenant.principal,
                "scheduled_job.execute",
                "scheduled_job",
                job_id,
                org_id=tenant.org_id,
                after={"runId": run_id},
            )
        return await self.run(tenant, job_id, run_id)

    async def runs(
        self, tenant: TenantContext, job_id: str, status: str | None, page: PageRequest
    ) -> Page[RunRecord]:
        await self.get(tenant, job_id)  # 404 for another tenant's job
        async with self.db.read() as conn:
            items, total = await queries.list_runs(conn, tenant.org_id, job_id, status, page)
        return Page(items, total, page)

    async def run(self, tenant: TenantContext, job_id: str, run_id: str) -> RunRecord:
        async with self.db.read() as conn:
            found = await queries.get_run(conn, run_id, [tenant.org_id])
        if found is None or found.job_id != job_id:
            raise NotFoundError(f"run {run_id} of scheduled job {job_id} not found")
        return found

    async def test_source(
        self, tenant: TenantContext, raw_source: Any, timezone: str | None
    ) -> SourceTest:
        """Run a data source now and return at most ``TEST_SAMPLE`` records; nothing is
        delivered or stored."""
        source, connection = parse_source(raw_source)
        self._check_source_rights(tenant, source.type)
        self._check_variables(source.templates())
        if connection is not None:
            normalize_url(connection, field_name="dataSource.connectionString")
        async with self.db.read() as conn:
            zone = await self._tenant_zone(conn, tenant, timezone)
        ctx = VariableContext(tenant.org_id, "test", self.clock(), ZoneInfo(zone), self.env)
        started = self.clock()
        fetched = await self.runner.fetch(source, connection, ctx, max_rows=self.max_rows)
        elapsed = int((self.clock() - started).total_seconds() * 1000)
        return SourceTest(fetched.records, sample(fetched.data, TEST_SAMPLE), elapsed)

    # --- ticks (the scheduler loop) ---

    async def schedule_due(self) -> int:
        """Claim every due tick (up to a batch) and queue its run; how many were queued."""
        now = self.clock()
        async with self.db.read() as conn:
            due = await queries.due_jobs(conn, now, DUE_BATCH)
        queued = 0
        for record in due:
            try:
                queued += await self._claim_tick(record, now)
            except Exception:  # one broken job (unreadable secrets?) must not stop the rest
                log.exception("scheduled job %s: tick not claimed", record.id)
        return queued

    async def _claim_tick(self, record: JobRecord, now: datetime) -> int:
        if record.next_run_at is None:
            return 0
        try:
            stored = self._stored(record)
            tick = plan(stored.schedule, record.next_run_at, now)
        except (ScheduleError, ValidationError, ValueError) as exc:
            log.error("scheduled job %s: cannot compute its next tick: %s", record.id, exc)
            return 0
        if tick is None:
            return 0
        async with self.db.write() as conn:
            if not await queries.advance(conn, record.id, record.next_run_at, tick.next_run_at):
                return 0  # another node claimed it
            if tick.skipped:
                log.info("scheduled job %s: %d missed tick(s) skipped", record.id, tick.skipped)
            if tick.run_for is None:
                return 0
            key = "tick:" + tick.run_for.isoformat()
            return await self._enqueue_run(conn, record, SCHEDULE, tick.run_for, key)

    async def _enqueue_run(
        self,
        conn: Any,
        record: JobRecord,
        trigger: str,
        scheduled_for: datetime,
        run_key: str,
        run_id: str | None = None,
    ) -> int:
        if await queries.run_key_taken(conn, record.id, run_key):
            return 0
        run_id = run_id or new_id("sjr")
        job = NewJob(
            kind=JOB_KIND,
            payload={"runId": run_id, "jobId": record.id, "orgId": record.org_id},
            queue=JOB_QUEUE,
            org_id=record.org_id,
            run_at=scheduled_for if scheduled_for > self.clock() else None,
            max_attempts=QUEUE_ATTEMPTS,
            dedupe_key=f"sjob:{record.id}:{run_key}"[:200],
        )
        [queue_job_id] = await self.queue.enqueue(conn, [job])
        await queries.insert_run(
            conn,
            new_run_row(
                run_id, record, trigger, scheduled_for, run_key, queue_job_id, self.clock()
            ),
        )
        return 1

    # --- helpers ---

    def load(self, record: JobRecord) -> StoredJob:
        return self._stored(record)

    def _stored(self, record: JobRecord) -> StoredJob:
        secrets = JobSecrets()
        if record.secrets:
            opened = self.secretbox.open(record.secrets, associated=record.id)
            secrets = JobSecrets.from_json(orjson.loads(opened))
        config, _ = parse_job(with_job_secrets(record.config, secrets))
        return StoredJob(record, config, secrets)

    def _seal(self, job_id: str, secrets: JobSecrets) -> str | None:
        if not secrets.auth and secrets.connection_string is None:
            return None
        plain = orjson.dumps(secrets.to_json()).decode()
        return self.secretbox.seal(plain, associated=job_id)

    def _validate(
        self, tenant: TenantContext, body: Mapping[str, Any]
    ) -> tuple[JobConfig, JobSecrets]:
        config, secrets = parse_job(body)
        problems = validate_auth(config.auth)
        if problems:
            raise ValidationError(problems[0].message, problems=problems)
        self._check_source_rights(tenant, config.source.type)
        self._check_variables(config.source.templates())
        if secrets.connection_string is not None:
            normalize_url(secrets.connection_string, field_name="dataSource.connectionString")
        refused = address_problems(config, self.allowlist)
        if refused:
            raise ValidationError(refused[0].message, problems=refused)
        if config.transformation.mode is not None:
            compile_transformer(
                config.transformation.mode,
                config.transformation.script or "",
                limits=self.limits,
                loc=("body", "transformation", "script"),
            )
        return config, secrets

    def _check_source_rights(self, tenant: TenantContext, kind: SourceType) -> None:
        if kind is SourceType.SQL and not tenant.principal.is_admin:
            raise ForbiddenError("SQL data sources read databases directly and need the ADMIN role")

    def _check_variables(self, texts: Sequence[str]) -> None:
        problems = [p for text in texts for p in check_refs(text, list(self.env))]
        if problems:
            loc = ("body", "dataSource")
            raise ValidationError(
                problems[0], problems=[FieldProblem(loc, message) for message in problems]
            )

    def _with_stored_secrets(
        self, current: StoredJob, body: Mapping[str, Any], *, partial: bool
    ) -> dict[str, Any]:
        """The submitted document with masked credentials put back (and, for PATCH, the
        fields not sent taken from the current configuration)."""
        stored_doc = with_job_secrets(job_document(current.config), current.secrets)
        merged = {**stored_doc, **body} if partial else dict(body)
        same_type = merged.get("outgoingAuthType", "NONE") == current.config.auth.type.value
        stored_auth = {**current.config.auth.settings, **current.config.auth.secrets}
        merged["outgoingAuthConfig"] = restore_masked(
            merged.get("outgoingAuthConfig"), stored_auth, keep_omitted=same_type
        )
        # The database URL: its mask, or leaving it out, keeps the stored one; an explicit
        # null switches the query to the gateway's own database.
        source = merged.get("dataSource")
        stored_url = current.secrets.connection_string
        if isinstance(source, Mapping) and stored_url is not None:
            sent = source.get("connectionString", _OMITTED)
            if sent is _OMITTED or sent == masked_connection(stored_url):
                merged["dataSource"] = {**source, "connectionString": stored_url}
        return merged

    async def _zone(self, conn: Any, tenant: TenantContext, config: JobConfig) -> str:
        return await self._tenant_zone(conn, tenant, config.schedule.timezone)

    async def _tenant_zone(self, conn: Any, tenant: TenantContext, configured: str | None) -> str:
        """The job's zone, else its entity's, else its organization's, else UTC."""
        org_zone = None
        if tenant.entity.is_unit:
            org = await entities.get(conn, tenant.entity.root_id)
            org_zone = org.timezone if org is not None else None
        return resolve_zone(configured, tenant.entity.timezone, org_zone).key


def _schedule_of(config: JobConfig, zone: str) -> JobSchedule:
    spec = config.schedule
    return JobSchedule(spec.type, spec.expression, spec.interval_ms, zone, spec.catch_up)


def address_problems(config: JobConfig, allowlist: Allowlist) -> list[FieldProblem]:
    """URLs whose host is written as an address (or localhost) the SSRF guard would refuse:
    refused when saved. DNS names are checked when the request is sent (answers change)."""
    urls: list[tuple[tuple[str | int, ...], str]] = [(("body", "targetUrl"), config.target_url)]
    if config.source.url and "{{" not in config.source.url.split("/")[2]:
        urls.append((("body", "dataSource", "url"), config.source.url))
    return [
        FieldProblem(loc, REFUSED_MESSAGE)
        for loc, url in urls
        if refused_without_dns(url, allowlist)
    ]


def new_run_row(
    run_id: str,
    record: JobRecord,
    trigger: str,
    scheduled_for: datetime,
    run_key: str,
    queue_job_id: str,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "job_id": record.id,
        "org_id": record.org_id,
        "run_key": run_key,
        "trigger": trigger,
        "scheduled_for": scheduled_for,
        "status": QUEUED,
        "stage": None,
        "queue_job_id": queue_job_id,
        "attempt": 0,
        "started_at": None,
        "completed_at": None,
        "duration_ms": None,
        "data_fetch_stage": None,
        "records_fetched": None,
        "data_fetched": None,
        "data_truncated": False,
        "transformation_stage": None,
        "transformed_payload": None,
        "delivery_stage": None,
        "http_request": None,
        "curl_command": None,
        "response_status": None,
        "response_headers": None,
        "response_body": None,
        "delivery_attempts": 0,
        "error_context": None,
        "created_at": now,
    }


# --- executing runs (called by the worker with a claimed queue job) ---


@dataclass(frozen=True)
class StartedRun:
    stored: StoredJob
    run: RunRecord
    attempt: int
    started_at: datetime


class LeaseLost(Exception):
    """The run's queue job is no longer ours: its result is not recorded."""


INTERRUPTED = (
    "interrupted: the node running it stopped before it finished (lease expired); not run "
    "again, as it may have delivered already. The next tick runs as scheduled."
)


class RunExecution:
    """Start and finish the runs a worker claimed (the run row and the queue job move in
    one transaction, so a run is never left RUNNING with its queue job done)."""

    def __init__(self, jobs: ScheduledJobService) -> None:
        self.jobs = jobs
        self.db = jobs.db
        self.queue = jobs.queue

    async def start(self, job: Job) -> StartedRun | None:
        """The run to execute now, or None when there is nothing to run (already finished,
        interrupted earlier, job deleted or paused); the queue job is then completed."""
        run_id = str(job.payload.get("runId"))
        org_id = int(job.payload.get("orgId", 0))
        now = self.jobs.clock()
        async with self.db.write() as conn:
            run = await queries.get_run(conn, run_id, [org_id])
            if run is None or run.status not in queries.UNFINISHED:
                await self.queue.complete(job.id, job.lease.token, conn=conn)
                return None
            if run.status == RUNNING:  # claimed again after its node stopped mid-run
                stage = run.stage or "DATA_FETCH"
                await self._close(conn, job, run, "FAILED", error_context(stage, INTERRUPTED), now)
                return None
            record = await queries.get_job(conn, run.job_id, [org_id])
            if record is None or (run.trigger == SCHEDULE and not record.is_active):
                reason = "the job was paused before this run started"
                context = {"stage": None, "error": reason, "type": "Cancelled", "stack": None}
                await self._close(conn, job, run, CANCELLED, context, now)
                return None
            values = {
                "status": RUNNING,
                "stage": "DATA_FETCH",
                "started_at": now,
                "attempt": job.attempts,
            }
            await queries.update_run(conn, run.id, values)
        return StartedRun(self.jobs.load(record), run, job.attempts, now)

    async def _close(
        self,
        conn: Any,
        job: Job,
        run: RunRecord,
        status: str,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        values = {
            "status": status,
            "error_context": context,
            "completed_at": now,
            "attempt": job.attempts,  # fences out a worker that still thinks it runs it
        }
        await queries.update_run(conn, run.id, values)
        await queries.mark_last_run(conn, run.job_id, now, status)
        await self.queue.complete(job.id, job.lease.token, conn=conn)

    async def mark_stage(self, started: StartedRun, stage: str) -> None:
        async with self.db.write() as conn:
            await queries.update_run(
                conn, started.run.id, {"stage": stage}, attempt=started.attempt
            )

    async def finish(self, job: Job, started: StartedRun, result: RunLog) -> None:
        """Record the result and complete the queue job, or neither (``LeaseLost``)."""
        now = self.jobs.clock()
        values = {
            **result.fields,
            "status": result.status,
            "stage": str(result.stage),
            "completed_at": now,
        }
        async with self.db.write() as conn:
            if not await queries.update_run(conn, started.run.id, values, attempt=started.attempt):
                raise LeaseLost(started.run.id)
            if not await self.queue.complete(job.id, job.lease.token, conn=conn):
                raise LeaseLost(started.run.id)  # rolls the run's update back
            await queries.mark_last_run(conn, started.run.job_id, now, result.status)

    def run_input(self, started: StartedRun) -> RunInput:
        stored, run = started.stored, started.run
        ctx = VariableContext(
            stored.record.org_id,
            stored.record.id,
            run.scheduled_for,
            ZoneInfo(stored.record.timezone),
            self.jobs.env,
        )
        return RunInput(
            job_id=stored.record.id,
            job_name=stored.record.name,
            version=stored.record.version,
            org_id=stored.record.org_id,
            run_id=run.id,
            trigger=run.trigger,
            scheduled_for=run.scheduled_for,
            timezone=stored.record.timezone,
            connection_string=stored.secrets.connection_string,
            variables=ctx,
        )

    async def fail_orphans(self, limit: int = 100) -> int:
        """Mark failed the unfinished runs whose queue job ended without them (dead-lettered
        or cancelled): no run stays QUEUED or RUNNING for ever."""
        async with self.db.read() as conn:
            orphans = await queries.orphaned_runs(conn, limit)
        now = self.jobs.clock()
        for run in orphans:
            context = error_context(
                run.stage or "DATA_FETCH", "the run's queue job ended without a result"
            )
            values = {"status": "FAILED", "error_context": context, "completed_at": now}
            async with self.db.write() as conn:
                await queries.update_run(conn, run.id, values, attempt=run.attempt)
        return len(orphans)
