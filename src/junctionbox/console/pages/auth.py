"""Login, logout and the ADMIN's organization switcher."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.session import (
    CSRF_COOKIE,
    ORG_COOKIE,
    SESSION_COOKIE,
    SessionData,
)
from junctionbox.console.web import PREFIX, ConsoleRoute, context, redirect, render, secure
from junctionbox.errors import RateLimitedError, UnauthorizedError, ValidationError
from junctionbox.store.types import utcnow

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute)


def _next(raw: str) -> str:
    """Only a console path: never an open redirect to another site."""
    return (
        raw
        if raw.startswith(f"{PREFIX}/") and "//" not in raw and "\\" not in raw
        else (f"{PREFIX}/dashboard")
    )


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    return redirect(None, f"{PREFIX}/dashboard", request)


@router.get("/login")
async def login_form(request: Request) -> Response:
    ctx = await context(request, login=False)
    return render(ctx, "login.html", next=_next(ctx.query("next")), error=None, email="")


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = await context(request, login=False)
    email, password = ctx.field("email"), ctx.secret_field("password")
    target = _next(ctx.field("next"))
    try:
        if not email or not password:
            raise ValidationError("enter your email and password")
        client = request.client
        issued, user = await ctx.svc.auth.login(email, password, client.host if client else None)
    except (UnauthorizedError, ValidationError, RateLimitedError) as exc:
        response = render(
            ctx, "login.html", exc.status, next=target, error=exc.message, email=email
        )
        response.headers.update(exc.headers)
        return response
    value = ctx.state.codec.encode(
        SessionData(issued.token, ctx.state.codec.password_stamp(user.password_hash))
    )
    response = redirect(None, target, request)
    max_age = max(0, int((issued.expires_at - utcnow()).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure(request),
        path=PREFIX,
    )
    # A fresh CSRF nonce for the new session.
    response.set_cookie(
        CSRF_COOKIE,
        ctx.state.codec.new_nonce(),
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path=PREFIX,
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = await context(request)
    if ctx.session is not None:
        with contextlib.suppress(UnauthorizedError):  # expired: nothing left to revoke
            await ctx.svc.auth.logout(ctx.session.token)
    response = redirect(None, f"{PREFIX}/login", request)
    for name in (SESSION_COOKIE, ORG_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=PREFIX)
    return response


@router.post("/switch-org")
async def switch_org(request: Request) -> Response:
    ctx = await context(request)
    ctx.require_admin()
    raw = ctx.field("orgId")
    if not raw.isdigit():
        raise ValidationError("choose an organization")
    await ctx.svc.tenancy.resolve(ctx.principal, int(raw))  # type: ignore[arg-type]
    response = redirect(ctx, _next(ctx.field("next")))
    response.set_cookie(
        ORG_COOKIE, raw, httponly=True, samesite="lax", secure=secure(request), path=PREFIX
    )
    return response
