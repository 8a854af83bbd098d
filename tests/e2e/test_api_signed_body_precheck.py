"""A request carrying X-Device-Signature is checked on its headers before its body is
read: junk headers, an unknown device or a stale timestamp get 401 at once, and the body
is never buffered (an unauthenticated client cannot make the server hold it)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from storefront.bootstrap import bootstrap
from storefront.security.client import sign_headers
from storefront.security.devices_http import SignedBodyMiddleware
from storefront.settings import Settings

PATH = "/sessions/ses_x/events"


def _run(container: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any], int, bool]:
    """(status, JSON body, body chunks read, inner app reached) for one request whose
    body is 64 chunks of 1 MiB."""
    reads, reached, sent = 0, False, []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 2**20, "more_body": reads < 64}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def inner(scope: Any, rcv: Any, snd: Any) -> None:
        nonlocal reached
        reached = True
        await snd({"type": "http.response.start", "status": 204, "headers": []})
        await snd({"type": "http.response.body", "body": b""})

    scope = {"type": "http", "method": "POST", "path": PATH, "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "app": SimpleNamespace(state=SimpleNamespace(container=container))}
    # In a thread of its own: other tests (the browser's) may leave a loop running here.
    runner = threading.Thread(
        target=lambda: asyncio.run(SignedBodyMiddleware(inner)(scope, receive, send)))
    runner.start()
    runner.join()
    body = json.loads(sent[1]["body"]) if sent[1]["body"] else {}
    return sent[0]["status"], body, reads, reached


@pytest.fixture
def container(tmp_path: Path) -> Any:
    c = bootstrap(Settings(data_dir=tmp_path))
    yield c
    c.close()


def test_bad_signed_headers_are_refused_before_the_body_is_read(container: Any) -> None:
    key = container.security.registry.add(store_id=container.settings.store_id,
                                          device_id="cart-9", kind="cart")
    now = int(time.time() * 1000)
    good = sign_headers(key, device_id="cart-9", method="POST", path=PATH, query="",
                        body=b"", ts_ms=now)
    cases = {
        "junk": ({"X-Device-Signature": "junk"}, "must be signed"),
        "unknown device": ({**good, "X-Device-Id": "ghost"}, "unknown or revoked"),
        "stale": (sign_headers(key, device_id="cart-9", method="POST", path=PATH, query="",
                               body=b"", ts_ms=now - 600_000), "stale"),
    }
    for name, (headers, reason) in cases.items():
        status, body, reads, reached = _run(container, headers)
        assert (status, body["error"]) == (401, "unauthenticated"), name
        assert reason in body["reason"], name
        assert reads == 0 and not reached, name  # nothing buffered, app not called
    # Well-formed headers of a registered device: the body is read (then the route
    # checks the signature over it).
    status, _, reads, reached = _run(container, good)
    assert (status, reads, reached) == (413, 33, False)  # 33 MiB read: over the 32 MiB cap
