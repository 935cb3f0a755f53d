"""/api/v1/outbound-integrations"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/outbound-integrations", tags=["outbound-integrations"])
