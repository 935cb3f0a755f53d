"""Destinations deliveries go to, behind one adapter interface (issue 4 item 14)."""

from __future__ import annotations

from junctionbox.connectors.destinations.base import (
    Destination,
    DestinationError,
    DestinationRefusedError,
    DestinationResult,
    HealthState,
    HealthStatus,
)
from junctionbox.connectors.destinations.http import HttpDestination

__all__ = [
    "Destination",
    "DestinationError",
    "DestinationRefusedError",
    "DestinationResult",
    "HealthState",
    "HealthStatus",
    "HttpDestination",
]
