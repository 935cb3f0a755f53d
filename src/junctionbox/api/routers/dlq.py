"""/api/v1/dlq"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/dlq", tags=["dlq"])
