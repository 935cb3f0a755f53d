"""The local receiver of ``junctionbox receive``: checks signatures, reports deliveries."""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from junctionbox.connectors.webhook_receiver import ReceivedWebhook, receiver_app
from junctionbox.domain.signing import generate_secret, webhook_headers


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_signed_deliveries_pass_and_forged_ones_are_refused() -> None:
    secret = generate_secret()
    seen: list[ReceivedWebhook] = []
    runner, base = await serve(receiver_app(seen.append, secrets=[secret], status=202))
    body = b'{"n": 1}'
    good = webhook_headers("msg_1", int(time.time()), body, [secret])
    forged = webhook_headers("msg_1", int(time.time()), body, [generate_secret()])
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/hook", data=body, headers=good) as response:
                assert response.status == 202
            async with http.post(f"{base}/hook", data=body, headers=forged) as response:
                assert response.status == 401
    finally:
        await runner.cleanup()
    assert [(h.webhook_id, h.signature_ok, h.body) for h in seen] == [
        ("msg_1", True, body),
        ("msg_1", False, body),
    ]
    assert seen[1].problem


async def test_without_a_secret_nothing_is_checked() -> None:
    seen: list[ReceivedWebhook] = []
    runner, base = await serve(receiver_app(seen.append))
    try:
        async with aiohttp.ClientSession() as http, http.put(f"{base}/x", data=b"hi") as response:
            assert response.status == 204
    finally:
        await runner.cleanup()
    assert (seen[0].method, seen[0].path, seen[0].signature_ok) == ("PUT", "/x", None)
