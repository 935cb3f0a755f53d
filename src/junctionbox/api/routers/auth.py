"""``/api/v1/auth``: login, logout and the current caller."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from junctionbox.api.deps import PrincipalDep, ServicesDep, bearer_token
from junctionbox.api.schemas import ApiModel, Message, RequestModel, UserOut, check_email
from junctionbox.errors import UnauthorizedError

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(RequestModel):
    email: str = Field(max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    _email = field_validator("email")(check_email)


class LoginResponse(ApiModel):
    token: str
    expires_at: datetime
    user: UserOut


class MeResponse(ApiModel):
    kind: str
    id: str
    role: str
    org_id: int | None
    user: UserOut | None = None


@router.post(
    "/login",
    response_model=LoginResponse,
    summary="Exchange email and password for a token",
    description=(
        "401 for a wrong e-mail or password. Attempts are throttled per client address and "
        "per account (`JB_LOGIN_ATTEMPTS_PER_IP_PER_MINUTE`, "
        "`JB_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE`): over either, 429 with `Retry-After`, "
        "and the password is not checked."
    ),
)
async def login(body: LoginRequest, request: Request, svc: ServicesDep) -> LoginResponse:
    client = request.client
    issued, user = await svc.auth.login(body.email, body.password, client.host if client else None)
    return LoginResponse(
        token=issued.token, expires_at=issued.expires_at, user=UserOut.model_validate(user)
    )


@router.post("/logout", response_model=Message, summary="Revoke the token used for this call")
async def logout(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Message:
    token = bearer_token(request)
    if token is None:
        raise UnauthorizedError("logout revokes a login token: send Authorization: Bearer")
    await svc.auth.logout(token)
    return Message(message="logged out")


@router.get("/me", response_model=MeResponse, summary="Who the credential belongs to")
async def me(caller: PrincipalDep, svc: ServicesDep) -> MeResponse:
    user = await svc.auth.current_user(caller)
    return MeResponse(
        kind=caller.kind.value,
        id=caller.id,
        role=caller.role.value,
        org_id=caller.org_id,
        user=UserOut.model_validate(user) if user else None,
    )
