"""Fixtures shared by integration tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

LOCALSTRIPE_KEY = "sk_test_storefront"  # localstripe takes any test key


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The database URL to test against: None (the embedded SQLite default, in the test's
    state folder) or the PostgreSQL of ``postgres_url`` (skipped when it is down, except
    under CI=true)."""
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("postgres_url")


_SERVER = ("import sys; from aiohttp import web; from localstripe.server import app; "
           "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)")


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    """A localstripe server (a stateful fake of the Stripe API) on a free loopback port
    for the module's tests; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/v1/balance", auth=(LOCALSTRIPE_KEY, ""), timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "localstripe did not start in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
