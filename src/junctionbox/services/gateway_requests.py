"""One gateway request, before it is sent: who the caller is, whether they may, and what
exactly goes upstream. Used by the serving path and by the dry run (``POST test``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jwt
import orjson

from junctionbox.domain.proxy import HOP_BY_HOP
from junctionbox.errors import (
    ForbiddenError,
    JunctionboxError,
    MalformedBodyError,
    UnauthorizedError,
)
from junctionbox.expr import EMPTY_CONTEXT
from junctionbox.services.auth import AuthService
from junctionbox.services.gateway import Match
from junctionbox.services.gateway_model import CompiledRoute

SENSITIVE = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})


@dataclass(frozen=True)
class Caller:
    client_id: str  # what per-client limits and analytics count by
    roles: frozenset[str]
    scopes: frozenset[str]


@dataclass(frozen=True)
class UpstreamPlan:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes

    def masked(self) -> dict[str, object]:
        headers = [(k, "********" if k.lower() in SENSITIVE else v) for k, v in self.headers]
        try:
            body: object = orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            body = self.body.decode("utf-8", "replace")
        return {"method": self.method, "url": self.url, "headers": headers, "body": body}


async def authenticate(
    route: CompiledRoute,
    headers: Mapping[str, str],
    client_ip: str,
    auth: AuthService,
    root_org_id: int | None = None,
) -> Caller:
    """The caller of ``route``; an API key must belong to the route's organization (for a
    unit's route, ``root_org_id``, the unit's organization)."""
    if route.auth_type == "API_KEY":
        key = headers.get(route.api_key_header)
        if not key:
            raise UnauthorizedError(f"this route needs an API key in {route.api_key_header}")
        principal = await auth.authenticate_api_key(key)
        if principal.org_id is None or principal.org_id not in (route.org_id, root_org_id):
            raise UnauthorizedError("invalid API key")
        return Caller(f"key:{principal.id}", frozenset({principal.role.value}), frozenset())
    if route.auth_type == "JWT":
        return _jwt_caller(route, headers)
    return Caller(f"ip:{client_ip}", frozenset(), frozenset())


def _jwt_caller(route: CompiledRoute, headers: Mapping[str, str]) -> Caller:
    spec = route.jwt
    assert spec is not None
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError(
            "this route needs Authorization: Bearer <jwt>", headers={"www-authenticate": "Bearer"}
        )
    try:
        claims = jwt.decode(
            token.strip(),
            spec.key,
            algorithms=list(spec.algorithms),
            audience=spec.audience,
            issuer=spec.issuer,
            options={"require": ["exp"], "verify_aud": spec.audience is not None},
            leeway=30,
        )
    except jwt.PyJWTError as exc:
        raise UnauthorizedError(
            f"invalid token: {exc}", headers={"www-authenticate": 'Bearer error="invalid_token"'}
        ) from None
    return Caller(
        f"sub:{claims.get('sub', '?')}",
        _claim_set(claims.get(spec.roles_claim)),
        _claim_set(claims.get(spec.scopes_claim)),
    )


def _claim_set(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value)
    return frozenset()


def authorize(route: CompiledRoute, caller: Caller) -> None:
    """Any one of the route's roles, and every one of its scopes."""
    if route.roles and not route.roles & caller.roles:
        raise ForbiddenError(f"this route needs one of the roles {sorted(route.roles)}")
    missing = route.scopes - caller.scopes
    if missing:
        raise ForbiddenError(f"this route needs the scopes {sorted(missing)}")


def forwarded_headers(
    incoming: Sequence[tuple[str, str]], route: CompiledRoute
) -> list[tuple[str, str]]:
    """Incoming headers minus hop-by-hop ones (and any the Connection header names), the
    Host and framing headers (the client sets them), and the gateway's own API key."""
    named = {
        token.strip().lower()
        for key, value in incoming
        if key.lower() == "connection"
        for token in value.split(",")
    }
    drop = HOP_BY_HOP | named | {"host", "content-length", "expect"}
    if route.auth_type == "API_KEY":
        drop = drop | {route.api_key_header}
    return [(k, v) for k, v in incoming if k.lower() not in drop and not _forwarded(k)]


def _forwarded(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("x-forwarded-") or lowered == "forwarded"


def response_headers(
    upstream: Sequence[tuple[str, str]], route: CompiledRoute, *, rewritten: bool
) -> list[tuple[str, str]]:
    named = {
        token.strip().lower()
        for key, value in upstream
        if key.lower() == "connection"
        for token in value.split(",")
    }
    drop = HOP_BY_HOP | named | {"server", "date"}
    if rewritten:
        drop = drop | {"content-length", "content-encoding", "etag"}
    kept = [(k, v) for k, v in upstream if k.lower() not in drop]
    return route.response_headers.apply(kept)


def plan(
    match: Match,
    method: str,
    headers: Sequence[tuple[str, str]],
    query: str,
    body: bytes,
    *,
    target: str,
    client_ip: str,
    scheme: str,
    host: str | None,
    prefix: str,
    request_id: str | None,
) -> UpstreamPlan:
    route = match.route
    out = forwarded_headers(headers, route)
    out += [("X-Forwarded-For", client_ip), ("X-Forwarded-Proto", scheme)]
    out += [("X-Forwarded-Prefix", prefix)]
    if host:
        out.append(("X-Forwarded-Host", host))
    if request_id:
        out = [(k, v) for k, v in out if k.lower() != "x-request-id"]
        out.append(("X-Request-Id", request_id))
    if route.request_body is not None and body:
        body = transform_body(route, body, "request")
        out = [(k, v) for k, v in out if k.lower() not in {"content-type", "content-encoding"}]
        out.append(("Content-Type", "application/json"))
    out = route.request_headers.apply(out)
    url = target + match.upstream_path + (f"?{query}" if query else "")
    return UpstreamPlan(method, url, out, body)


def transform_body(route: CompiledRoute, body: bytes, which: str) -> bytes:
    transformer = route.request_body if which == "request" else route.response_body
    assert transformer is not None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if which == "request":
            raise MalformedBodyError(f"the body is not valid JSON ({exc})") from None
        raise
    context = {"route": route.id, "direction": which}
    try:
        return orjson.dumps(transformer.transform(value, context or EMPTY_CONTEXT))
    except JunctionboxError:
        raise
