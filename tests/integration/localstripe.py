"""A localstripe server (a stateful fake of the Stripe API) for the Stripe adapter's tests:
started on a free loopback port, and read back through the official client."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import stripe

KEY = "sk_test_storefront"  # localstripe takes any test key
_SERVER = ("import sys; from aiohttp import web; from localstripe.server import app; "
           "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)")
START_TIMEOUT_S = 30.0


@contextlib.contextmanager
def serve() -> Iterator[str]:
    """Run localstripe on a free loopback port; yields its base URL, stops it on exit.

    Raises AssertionError when the server exits or does not answer within
    ``START_TIMEOUT_S`` seconds (its stderr is in the message).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not _answers(url):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "localstripe did not start in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    """True once the server at ``url`` answers a balance request (False: not listening yet)."""
    try:
        return httpx.get(f"{url}/v1/balance", auth=(KEY, ""), timeout=1).is_success
    except httpx.TransportError:
        return False


def intent(url: str, intent_id: str) -> dict[str, Any]:
    """The PaymentIntent ``intent_id`` as localstripe holds it (a plain dict)."""
    client = stripe.StripeClient(KEY, base_addresses={"api": url}, max_network_retries=0)
    return dict(client.v1.payment_intents.retrieve(intent_id).to_dict())
