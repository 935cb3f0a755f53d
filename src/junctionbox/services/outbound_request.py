"""Builds the exact HTTP request of one delivery: transform, auth, signature, curl."""

from __future__ import annotations

from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.services.lookups import LookupService


class RequestBuilder:
    def __init__(self, lookups: LookupService, http: GuardedHttpClient) -> None:
        pass
