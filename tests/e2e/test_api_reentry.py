"""A shopper is in the store once: entering again while a session is still open (its exit
was never recorded) sends that session to the staffed checkout for review, uncharged,
unless that session is seconds old and has recorded nothing: then it is the same entry."""

from __future__ import annotations

from typing import Any


def test_entering_again_sends_the_open_session_to_staff_uncharged(make_store: Any) -> None:
    store = make_store()
    store.add_products()
    shopper = store.register("Noa")
    store.enrol(shopper, 2)
    first = store.enter(store.palm_png(2, store.PROBE_CAPTURE))["session_id"]
    assert store.send(first, store.event("picked", "APPLE-1", 2, "cart-1", 0, 1)).status_code == 201
    second = store.enter(store.palm_png(2, store.PROBE_CAPTURE))["session_id"]
    assert second != first
    old, new = store.session(first), store.session(second)
    assert old["status"] == "staffed" and old["staffed_reason"].startswith(
        "no exit recorded: the shopper entered again")
    assert new["status"] == "open"
    queue = store.client.get("/staff/queue").json()
    assert [row["session_id"] for row in queue] == [first]
    assert all(hold["captured_minor"] is None for hold in store.processor.holds())  # uncharged
    # At once again, the new session still empty: the same entry (a double scan).
    assert store.enter(store.palm_png(2, store.PROBE_CAPTURE))["session_id"] == second
    assert store.session(second)["status"] == "open"
    assert store.send(second, store.event("picked", "APPLE-1", 1, "cart-1", 1, 1)
                      ).status_code == 201
    third = store.enter(store.palm_png(2, store.PROBE_CAPTURE))["session_id"]
    assert store.session(second)["status"] == "staffed" and store.session(third)["status"] == "open"
