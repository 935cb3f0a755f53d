"""/api/v1/scheduled-integrations"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/scheduled-integrations", tags=["scheduled-integrations"])
