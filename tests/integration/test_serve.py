"""`storefront serve` starts a real uvicorn server: migrations applied, OpenAPI served."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_health_and_docs(tmp_path: Path) -> None:
    port = _free_port()
    cli = Path(sys.executable).parent / "storefront"
    env = {**os.environ, "STOREFRONT_STATE_DIR": str(tmp_path / "data")}
    env.pop("STOREFRONT_DATABASE_URL", None)
    proc = subprocess.Popen([str(cli), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not come up in 60 s"
            time.sleep(0.3)
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 200
        spec = httpx.get(f"{base}/openapi.json", timeout=5).json()
        assert "/gates/entry" in spec["paths"] and "/sessions/{session_id}/exit" in spec["paths"]
        assert (tmp_path / "data" / "storefront.db").is_file()
        assert (tmp_path / "data" / "keys" / "kek.key").stat().st_mode & 0o077 == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_in_production_without_a_key_file_stops_with_the_reason(tmp_path: Path) -> None:
    """No KEK outside development mode: exit 2 naming the missing key file, before any
    server starts (no traceback)."""
    cli = Path(sys.executable).parent / "storefront"
    env = {**os.environ, "STOREFRONT_STATE_DIR": str(tmp_path / "data"),
           "STOREFRONT_ENVIRONMENT": "production"}
    env.pop("STOREFRONT_DATABASE_URL", None)
    env.pop("STOREFRONT_KEY_FILE", None)
    done = subprocess.run([str(cli), "serve", "--port", str(_free_port())], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "kek.key does not exist" in out and "Traceback" not in out
    assert "Uvicorn running" not in out
