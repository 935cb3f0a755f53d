"""/api/v1/logs (delivery logs) and /api/v1/execution-logs (step-by-step traces)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["logs"])
