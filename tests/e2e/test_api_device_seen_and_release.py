"""Signed HTTP requests update a device's last-seen time (throttled); releasing the
claim of an unknown session is 404 like claim, close and age-check."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from storefront.cli import app
from storefront.security.devices_http import (
    LAST_SEEN_EVERY,
    DeviceRequestVerifier,
    sign_headers,
)
from storefront.security.errors import AuthenticationRequired


def _device_updates(engine: sa.Engine) -> tuple[list[str], Any]:
    """A list collecting every UPDATE of ``devices`` run on ``engine``, and its listener."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE DEVICES"):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listen)
    return seen, listen


def test_signed_http_requests_update_last_seen_once_a_minute(
        make_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    c = store.container
    shopper = store.register("Dana")
    updates, listener = _device_updates(c.engine)
    try:
        for _ in range(5):  # five signed gate requests (exits)
            sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
            assert store.client.post(f"/sessions/{sid}/exit").status_code == 200
    finally:
        sa.event.remove(c.engine, "before_cursor_execute", listener)
    assert len(updates) == 1  # throttled: one write in the first minute, not one per request
    gate = {d.id: d for d in c.security.registry.list()}["gate-1"]
    assert gate.last_seen_at is not None
    assert abs(gate.last_seen_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert gate.clock_offset_ms is not None and abs(gate.clock_offset_ms) < 5_000

    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(c.settings.data_dir))
    monkeypatch.setenv("STOREFRONT_STORE_ID", c.settings.store_id)
    listed = CliRunner().invoke(app, ["devices", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["id"]: r for r in json.loads(listed.output)}
    assert rows["gate-1"]["last_seen_at"] == gate.last_seen_at.isoformat()
    assert rows["gate-1"]["clock_offset_ms"] == gate.clock_offset_ms
    table = CliRunner().invoke(app, ["devices", "list"])  # the table names it too
    assert table.exit_code == 0 and "gate-1" in table.output


def test_last_seen_is_written_again_after_the_throttle_and_not_for_a_replay(
        make_store: Any) -> None:
    _check_last_seen_throttle(make_store())


@pytest.mark.postgres
def test_last_seen_throttle_on_postgres(postgres_url: str, make_store: Any) -> None:
    _check_last_seen_throttle(make_store(database_url=postgres_url))


def _check_last_seen_throttle(store: Any) -> None:
    """Written at the first request, not again within LAST_SEEN_EVERY, then again; a
    replayed request (refused) rolls its write back with the nonce."""
    c = store.container
    key = c.security.registry.add(store_id=c.settings.store_id, device_id="gate-7",
                                  kind="gate")
    now = [datetime.now(UTC)]
    verifier = DeviceRequestVerifier(registry=c.security.registry, sessions=c.db,
                                     clock=lambda: now[0], store_id=c.settings.store_id,
                                     window_s=300)

    def request(nonce: str | None = None) -> None:
        ts = int(now[0].timestamp() * 1000) + 1500  # the device's clock is 1.5 s ahead
        headers = sign_headers(key, device_id="gate-7", method="POST", path="/gates/entry",
                               query="", body=b"", ts_ms=ts, nonce=nonce)
        verifier.verify(method="POST", path="/gates/entry", query="", body=b"",
                        headers=headers)

    def seen() -> tuple[datetime | None, int | None]:
        view = {d.id: d for d in c.security.registry.list()}["gate-7"]
        return view.last_seen_at, view.clock_offset_ms

    assert seen() == (None, None)
    first = now[0]
    request()
    assert seen() == (first, 1500)
    now[0] = first + LAST_SEEN_EVERY / 2
    request()
    assert seen() == (first, 1500)  # within the minute: not written
    now[0] = first + LAST_SEEN_EVERY + timedelta(seconds=1)
    nonce = os.urandom(16).hex()
    request(nonce)
    assert seen() == (now[0], 1500)
    now[0] += LAST_SEEN_EVERY * 2
    with pytest.raises(AuthenticationRequired, match="replayed"):
        request(nonce)  # a replay is refused and leaves no trace
    assert seen()[0] == now[0] - LAST_SEEN_EVERY * 2


def test_release_of_an_unknown_session_is_404(make_store: Any) -> None:
    store = make_store()
    c = store.container
    body = store.error_of(store.client.post("/staff/sessions/ses_nope/release",
                                            json={"staff_id": "ann"}), 404)
    assert body["error"] == "not_found" and "ses_nope" in body["reason"]
    # a known session not claimed by the caller is still a conflict
    sid = c.gates.open_session(shopper_id=store.register("Dana"), entry_method="palm")
    refused = store.client.post(f"/staff/sessions/{sid}/release", json={"staff_id": "ann"})
    assert store.error_of(refused, 409)["error"] == "conflict"
