"""What every console page shares: the per-request context (who, which tenant, CSRF), the
route class that turns our errors into HTML pages, and template rendering.

The console calls the services in the same process, with the same checks as the API: the
caller is the API login token in the session cookie (``AuthService.authenticate_token``),
the tenant is ``TenancyService.resolve`` (so a USER can only ever act for their own
organization), and admin pages refuse a non-admin with 403.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from junctionbox.console.session import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    ORG_COOKIE,
    SESSION_COOKIE,
    SessionCodec,
    SessionData,
    session_id,
)
from junctionbox.domain.identity import Principal, TenantContext
from junctionbox.domain.paging import PageRequest
from junctionbox.errors import ForbiddenError, JunctionboxError, UnauthorizedError
from junctionbox.services.container import Services
from junctionbox.store.queries.entities import EntityRecord

log = logging.getLogger(__name__)
PREFIX = "/console"
HERE = Path(__file__).parent
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class LoginRequired(Exception):
    """No valid session: send the browser to the login page."""


class CsrfRejected(ForbiddenError):
    """The form's CSRF token is missing or does not match this session."""


class NoTenant(JunctionboxError):
    """There is no organization to act for yet: an ADMIN creates one under Admin."""

    code = "NO_TENANT"
    status = 409


@dataclass
class ConsoleState:
    """Built once by ``mount`` and kept on ``app.state.console``."""

    services: Services
    codec: SessionCodec
    templates: Jinja2Templates


@dataclass
class Ctx:
    """One console request: the caller, the tenant acted for and the form, if any."""

    request: Request
    state: ConsoleState
    session: SessionData | None
    nonce: str
    principal: Principal | None = None
    email: str | None = None
    tenant: TenantContext | None = None
    orgs: list[EntityRecord] = field(default_factory=list)
    form: FormData | None = None
    new_nonce: bool = False

    @property
    def svc(self) -> Services:
        return self.state.services

    @property
    def csrf_token(self) -> str:
        return self.state.codec.csrf_token(self.nonce, session_id(self.session))

    @property
    def is_admin(self) -> bool:
        return self.principal is not None and self.principal.is_admin

    def require_tenant(self) -> TenantContext:
        if self.tenant is None:
            raise NoTenant()
        return self.tenant

    def require_admin(self) -> Principal:
        if self.principal is None or not self.principal.is_admin:
            raise ForbiddenError("this page needs the ADMIN role")
        return self.principal

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def secret_field(self, name: str) -> str:
        """A password as typed: surrounding spaces are part of it."""
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else ""

    def fields(self, name: str) -> list[str]:
        if self.form is None:
            return []
        return [v for v in self.form.getlist(name) if isinstance(v, str) and v]

    def query(self, name: str) -> str:
        return (self.request.query_params.get(name) or "").strip()

    def page(self, limit: int = 25) -> PageRequest:
        raw = self.query("page")
        number = int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1
        return PageRequest(number, limit)

    def url(self, path: str, **params: Any) -> str:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return f"{PREFIX}{path}" + (f"?{urlencode(clean)}" if clean else "")

    def page_url(self, number: int) -> str:
        params = dict(self.request.query_params)
        params["page"] = str(number)
        return f"{self.request.url.path}?{urlencode(params)}"


def state_of(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


async def context(request: Request, *, login: bool = True) -> Ctx:
    """The request's context; with ``login``, a valid session is required."""
    state = state_of(request)
    codec = state.codec
    data = codec.decode(request.cookies.get(SESSION_COOKIE))
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    ctx = Ctx(request, state, data, nonce or codec.new_nonce(), new_nonce=not nonce)
    if login:
        await _authenticate(ctx)
    if request.method in UNSAFE:
        await _check_csrf(ctx)
    if login:
        await _choose_tenant(ctx)
    return ctx


async def _authenticate(ctx: Ctx) -> None:
    if ctx.session is None:
        raise LoginRequired()
    svc = ctx.svc
    try:
        principal = await svc.auth.authenticate_token(ctx.session.token)
        user = await svc.auth.current_user(principal)
    except UnauthorizedError as exc:
        raise LoginRequired() from exc
    # A password change ends the sessions opened with the old password.
    if user is None:
        raise LoginRequired()
    stamp = ctx.state.codec.password_stamp(user.password_hash)
    if not hmac.compare_digest(stamp, ctx.session.password_stamp):
        raise LoginRequired()
    ctx.principal, ctx.email = principal, user.email


async def _check_csrf(ctx: Ctx) -> None:
    request = ctx.request
    ctx.form = await request.form(max_files=5, max_fields=2000)
    sent = request.headers.get(CSRF_HEADER) or ctx.field(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not ctx.state.codec.csrf_valid(sent, cookie, session_id(ctx.session)):
        log.info("console CSRF check failed", extra={"path": request.url.path})
        raise CsrfRejected()


async def _choose_tenant(ctx: Ctx) -> None:
    """Which organization the pages act for: a USER's own; for an ADMIN the one picked in the
    org switcher (cookie), else the first."""
    principal = ctx.principal
    assert principal is not None
    svc = ctx.svc
    wanted: int | None = None
    if principal.is_admin:
        ctx.orgs = list((await svc.tenancy.list(PageRequest(1, 200))).items)
        raw = ctx.query("orgId") or ctx.request.cookies.get(ORG_COOKIE, "")
        wanted = int(raw) if raw.isdigit() else None
        ids = {o.id for o in ctx.orgs}
        if wanted not in ids and not (wanted and await _is_entity(ctx, wanted)):
            wanted = next((o.id for o in ctx.orgs if o.parent_id is None), None)
        if wanted is None:
            return
    ctx.tenant = await svc.tenancy.resolve(principal, wanted)


async def _is_entity(ctx: Ctx, entity_id: int) -> bool:
    try:
        await ctx.svc.tenancy.resolve(ctx.principal, entity_id)  # type: ignore[arg-type]
    except JunctionboxError:
        return False
    return True


# --- responses ---


def render(ctx: Ctx, template: str, status: int = 200, /, **values: Any) -> Response:
    response = ctx.state.templates.TemplateResponse(
        ctx.request, template, {"ctx": ctx, **values}, status_code=status
    )
    return finish(ctx, response)


# Console pages may not be framed (clickjacking) nor leak their URLs (ids) to other sites.
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'; form-action 'self'; base-uri 'self'",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}


def finish(ctx: Ctx, response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if ctx.new_nonce:
        response.set_cookie(
            CSRF_COOKIE,
            ctx.nonce,
            httponly=True,
            samesite="strict",
            secure=secure(ctx.request),
            path=PREFIX,
        )
    return response


def redirect(ctx: Ctx | None, location: str, request: Request | None = None) -> Response:
    """303 for a plain form post; HX-Redirect for htmx (which would swap the page inline)."""
    req = ctx.request if ctx is not None else request
    assert req is not None
    if req.headers.get("hx-request"):
        response: Response = Response(status_code=204, headers={"hx-redirect": location})
    else:
        response = RedirectResponse(location, status_code=303)
    return finish(ctx, response) if ctx is not None else response


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def problems_by_field(exc: JunctionboxError) -> dict[str, str]:
    """Validation problems keyed by the field they are about (``a.b`` for nested ones)."""
    found: dict[str, str] = {}
    for problem in exc.problems:
        parts = [str(p) for p in problem.loc if p not in ("body", "integration")]
        key = ".".join(parts) or "_"
        found.setdefault(key, problem.message)
        if len(parts) > 1:  # also beside the field that holds it (JSON text areas)
            found.setdefault(parts[0], f"{'.'.join(parts[1:])}: {problem.message}")
    return found


class ConsoleRoute(APIRoute):
    """Renders our errors as console pages rather than the API's JSON envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                target = f"{PREFIX}/login?next={quote(request.url.path)}"
                return redirect(None, target, request)
            except JunctionboxError as exc:
                return await error_page(request, exc)

        return guarded


async def error_page(request: Request, exc: JunctionboxError) -> Response:
    """The error as a page, with the navigation when the caller is logged in."""
    state = state_of(request)
    nonce = request.cookies.get(CSRF_COOKIE) or state.codec.new_nonce()
    data = state.codec.decode(request.cookies.get(SESSION_COOKIE))
    ctx = Ctx(request, state, data, nonce, new_nonce=CSRF_COOKIE not in request.cookies)
    if request.headers.get("hx-request"):
        return render(ctx, "partials/error.html", exc.status, error=exc)
    with contextlib.suppress(LoginRequired, JunctionboxError):
        await _authenticate(ctx)
        await _choose_tenant(ctx)
    return render(ctx, "error.html", exc.status, error=exc)
