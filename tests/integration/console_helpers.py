"""Driving the console over plain HTTP: log in through the form, read CSRF tokens."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def console_login(client: httpx.AsyncClient, email: str, password: str) -> str:
    """Log in; return a CSRF token valid for the new session."""
    page = await client.get("/console/login")
    assert page.status_code == 200
    response = await client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 303, response.text
    dashboard = await client.get("/console/dashboard")
    assert dashboard.status_code == 200, dashboard.text
    return csrf_of(dashboard.text)
