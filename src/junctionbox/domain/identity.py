"""Who is calling and what they may reach: roles, principals and the tenant rule.

Tenants form a two-level hierarchy: organizations and their units. Both live in one numeric
id space, so an ``orgId`` parameter may name an organization or one of its units.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "ADMIN"
    USER = "USER"
    API_KEY = "API_KEY"


class PrincipalKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``org_id`` is None only for ADMIN users."""

    kind: PrincipalKind
    id: str
    role: Role
    org_id: int | None
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True)
class Entity:
    """An organization (``parent_id`` None) or an org unit (``parent_id`` its org)."""

    id: int
    parent_id: int | None
    name: str
    timezone: str | None = None

    @property
    def root_id(self) -> int:
        return self.id if self.parent_id is None else self.parent_id

    @property
    def is_unit(self) -> bool:
        return self.parent_id is not None


@dataclass(frozen=True)
class TenantContext:
    """The tenant a request acts for: the named entity and the organization it belongs to."""

    entity: Entity
    principal: Principal

    @property
    def org_id(self) -> int:
        return self.entity.id

    @property
    def root_org_id(self) -> int:
        return self.entity.root_id


def may_act_for(principal: Principal, entity: Entity) -> bool:
    """ADMIN may act for any entity; others only for their own organization and its units."""
    if principal.is_admin:
        return True
    return principal.org_id is not None and entity.root_id == principal.org_id
