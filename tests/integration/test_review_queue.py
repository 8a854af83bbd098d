"""The review queue service (``storefront.review``) on a real store database: what it
lists, in which order, and how each decision changes the cart (audited corrections,
stored flag resolutions, the claim taken and given back), and what it refuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cart.events import ItemFlagged
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.errors import Conflict, InvalidInput, NotFound
from storefront.payments import SimulatedProcessor
from storefront.review import ReviewQueue
from storefront.security.errors import PermissionDenied
from storefront.settings import Settings

T0 = datetime.now(UTC) - timedelta(minutes=30)


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Container]:
    container = bootstrap(Settings(data_dir=tmp_path / "store"),
                          processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    container.catalogue.upsert([make_item("WATER", "Sparkling water", 95, "GBP"),
                                make_item("APPLE-1", "Apple", 35, "GBP")])
    yield container
    container.close()


def session(c: Container, device: str, events: list[tuple[str, str, int, float, int]],
            *, exit_: bool = True) -> str:
    """A session with item events (kind, code, quantity, confidence, seconds after T0)
    from ``device`` (sequence = index); exited unless ``exit_`` is False."""
    shopper = c.shoppers.register(display_name="Noa", payment_token=f"tok_{device}")
    sid = c.gates.open_session(shopper_id=shopper.id, entry_method="palm")
    for seq, (kind, code, qty, confidence, seconds) in enumerate(events):
        c.ingest.record(session_id=sid, kind=kind, product_code=code,  # type: ignore[arg-type]
                        quantity=qty, device_id=device, device_seq=seq,
                        sensor_time=T0 + timedelta(seconds=seconds), confidence=confidence)
    if exit_:
        c.checkout.exit(sid)
    return sid


def quantities(c: Container, sid: str) -> dict[str, int]:
    return {str(line["code"]): int(line["quantity"])  # type: ignore[call-overload]
            for line in c.staffed.cart(sid).lines}


def test_pending_lists_unresolved_flags_oldest_first_and_live_ones_waiting(
        c: Container) -> None:
    late = session(c, "d1", [("picked", "APPLE-1", 1, 1.0, 0),
                             ("put_back", "WATER", 1, 1.0, 50)])
    early = session(c, "d2", [("picked", "WATER", 2, 0.1, 10)])
    live = session(c, "d3", [("put_back", "APPLE-1", 1, 1.0, 5)], exit_=False)
    session(c, "d4", [("picked", "WATER", 1, 1.0, 1)])  # paid at the exit: no flags
    queue = ReviewQueue.of(c)
    items = queue.pending()
    assert [(i.session_id, i.device_seq, i.reason) for i in items] == [
        (live, 0, "put_back_not_picked"), (early, 0, "low_confidence"),
        (late, 1, "put_back_not_picked")]
    assert items[0].waiting_for and "is open" in items[0].waiting_for
    assert items[1].waiting_for is None and items[1].product_name == "Sparkling water"
    assert items[1].sensor_time == T0 + timedelta(seconds=10)
    assert [(s.session_id, s.items, s.flags) for s in queue.live()] == [(live, 0, 1)]


def test_accept_counts_a_low_confidence_pick_and_gives_the_claim_back(c: Container) -> None:
    sid = session(c, "d1", [("picked", "APPLE-1", 1, 1.0, 0), ("picked", "WATER", 2, 0.2, 1)])
    assert quantities(c, sid) == {"APPLE-1": 1}
    done = ReviewQueue.of(c).decide(session_id=sid, device_id="d1", device_seq=1,
                                    staff_id="ann", decision="accept", reason="seen on camera")
    assert done.correction is not None and (done.correction.quantity_before,
                                            done.correction.quantity_after) == (0, 2)
    assert done.correction.reason.startswith("review accept of flag d1#1: seen on camera")
    assert done.flags[0].resolved_by == "ann" and done.flags[0].note == "accept: seen on camera"
    cart = c.staffed.cart(sid)
    assert quantities(c, sid) == {"APPLE-1": 1, "WATER": 2} and cart.claim is None
    assert ReviewQueue.of(c).pending() == []
    with pytest.raises(Conflict, match="already resolved by staff ann"):
        ReviewQueue.of(c).decide(session_id=sid, device_id="d1", device_seq=1,
                                 staff_id="ann", decision="accept", reason="again")


def test_reject_undoes_what_the_event_did(c: Container) -> None:
    sid = session(c, "d1", [("picked", "APPLE-1", 2, 1.0, 0),
                            ("put_back", "APPLE-1", 5, 1.0, 1)])
    assert quantities(c, sid) == {}
    c.staffed.claim(session_id=sid, staff_id="ben")  # a claim the reviewer holds is kept
    done = ReviewQueue.of(c).decide(session_id=sid, device_id="d1", device_seq=1,
                                    staff_id="ben", decision="reject", reason="sensor glitch")
    assert done.correction is not None and done.correction.quantity_after == 2
    assert quantities(c, sid) == {"APPLE-1": 2}
    claim = c.staffed.cart(sid).claim
    assert claim is not None and claim.staff_id == "ben"


def test_reject_of_an_event_left_out_changes_no_line(c: Container) -> None:
    sid = session(c, "d1", [("picked", "APPLE-1", 1, 1.0, 0), ("picked", "WATER", 3, 0.1, 1)])
    done = ReviewQueue.of(c).decide(session_id=sid, device_id="d1", device_seq=1,
                                    staff_id="cat", decision="reject", reason="not taken")
    assert done.correction is None and c.staffed.cart(sid).corrections == ()
    assert quantities(c, sid) == {"APPLE-1": 1}


def test_a_retried_decision_does_not_correct_twice(c: Container) -> None:
    sid = session(c, "d1", [("picked", "APPLE-1", 4, 1.0, 0),
                            ("put_back", "APPLE-1", 9, 1.0, 1)])
    # A first attempt corrected the line, then failed before resolving the flag.
    c.staffed.claim(session_id=sid, staff_id="dan")
    c.staffed.correct(session_id=sid, staff_id="dan", product_code="APPLE-1", quantity=4,
                      reason="review reject of flag d1#1: glitch")
    done = ReviewQueue.of(c).decide(session_id=sid, device_id="d1", device_seq=1,
                                    staff_id="dan", decision="reject", reason="glitch")
    assert done.correction is None and quantities(c, sid) == {"APPLE-1": 4}
    assert len(c.staffed.cart(sid).corrections) == 1


def test_correct_sets_the_line_and_honours_the_limit(c: Container) -> None:
    sid = session(c, "d1", [("put_back", "WATER", 1, 1.0, 0)])
    queue = ReviewQueue.of(c)
    args = {"session_id": sid, "device_id": "d1", "device_seq": 0, "staff_id": "eve",
            "decision": "correct", "reason": "a crate"}
    with pytest.raises(PermissionDenied, match="over your limit of 20"):
        queue.decide(**args, corrected_quantity=24, max_change=20)  # type: ignore[arg-type]
    cart = c.staffed.cart(sid)
    assert cart.corrections == () and cart.claim is None and cart.flags[0].resolved_by is None
    done = queue.decide(**args, corrected_quantity=6, max_change=20)  # type: ignore[arg-type]
    assert done.correction is not None and quantities(c, sid) == {"WATER": 6}


def test_refusals_change_nothing(c: Container) -> None:
    sid = session(c, "d1", [("put_back", "WATER", 1, 1.0, 0)], exit_=False)
    c.carts.record_device_event(sid, ItemFlagged("weight_without_scan", "scale moved", None,
                                                 "d1", 7, T0 + timedelta(seconds=3)))
    c.checkout.exit(sid)
    live = session(c, "d2", [("put_back", "WATER", 1, 1.0, 0)], exit_=False)
    queue = ReviewQueue.of(c)
    base = {"session_id": sid, "device_id": "d1", "device_seq": 0, "staff_id": "fay",
            "reason": "x"}
    bad: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"decision": "maybe"}, InvalidInput, "decision must be"),
        ({"decision": "accept", "reason": "  "}, InvalidInput, "reason is required"),
        ({"decision": "accept", "reason": "a\x00b"}, InvalidInput, "control characters"),
        ({"decision": "correct"}, InvalidInput, "corrected quantity"),
        ({"decision": "correct", "corrected_quantity": -1}, InvalidInput, "corrected quantity"),
        ({"decision": "correct", "corrected_quantity": True}, InvalidInput, "corrected"),
        ({"decision": "correct", "corrected_quantity": 1, "device_seq": 7}, InvalidInput,
         "names no product"),
        ({"decision": "accept", "device_seq": 3}, NotFound, "no review flag"),
        ({"decision": "accept", "session_id": "ses_nope"}, NotFound, "does not exist"),
        ({"decision": "accept", "session_id": live, "device_id": "d2"}, Conflict,
         "decided at the staffed checkout"),
    ]
    for extra, error, message in bad:
        with pytest.raises(error, match=message):
            queue.decide(**(base | extra))  # type: ignore[arg-type]
    c.staffed.claim(session_id=sid, staff_id="gus")
    with pytest.raises(Conflict, match="claimed by staff gus"):
        queue.decide(**(base | {"decision": "accept"}))  # type: ignore[arg-type]
    cart = c.staffed.cart(sid)
    assert cart.corrections == () and all(f.resolved_by is None for f in cart.flags)
    assert cart.claim is not None and cart.claim.staff_id == "gus"
    # A flag naming no product can be accepted: the lines stay as they are.
    done = queue.decide(**(base | {"decision": "accept", "device_seq": 7,  # type: ignore[arg-type]
                                   "staff_id": "gus"}))
    assert done.correction is None
    assert [f.resolved_by for f in done.flags if f.device_seq == 7] == ["gus"]


def test_the_correction_limit_covers_the_session_so_splitting_does_not_get_round_it(
        c: Container) -> None:
    """A cashier's limit of 20 counts every correction of the session: 15 then 6 is refused."""
    sid = session(c, "d1", [("picked", "WATER", 1, 1.0, 0), ("picked", "APPLE-1", 1, 0.1, 1)])
    c.staffed.claim(session_id=sid, staff_id="fay")  # staffed: the low-confidence pick
    c.staffed.correct(session_id=sid, staff_id="fay", product_code="WATER", quantity=16,
                      reason="a crate", max_change=20)
    with pytest.raises(PermissionDenied, match="with 15 corrected on this session before"):
        c.staffed.correct(session_id=sid, staff_id="fay", product_code="WATER", quantity=22,
                          reason="another crate", max_change=20)
    assert quantities(c, sid)["WATER"] == 16
    c.staffed.correct(session_id=sid, staff_id="fay", product_code="WATER", quantity=22,
                      reason="checked by the manager")  # no limit
    assert quantities(c, sid)["WATER"] == 22


def test_a_decision_sent_again_answers_with_its_outcome_and_another_is_refused(
        c: Container) -> None:
    sid = session(c, "d1", [("picked", "APPLE-1", 1, 1.0, 0), ("picked", "WATER", 2, 0.2, 1)])
    queue = ReviewQueue.of(c)
    args: dict[str, object] = {"session_id": sid, "device_id": "d1", "device_seq": 1,
                               "staff_id": "ann", "decision": "correct", "reason": "counted",
                               "corrected_quantity": 3}
    first = queue.decide(**args)  # type: ignore[arg-type]
    assert first.correction is not None and first.correction.quantity_after == 3
    again = ReviewQueue.of(c).decide(**(args | {"staff_id": "bob"}))  # type: ignore[arg-type]
    assert again == first and len(c.staffed.cart(sid).corrections) == 1
    others: list[dict[str, object]] = [{"corrected_quantity": 4}, {"reason": "recounted"},
                                       {"decision": "reject", "corrected_quantity": None}]
    for other in others:
        with pytest.raises(Conflict, match="already resolved by staff ann at .* as correct to 3"):
            queue.decide(**(args | other))  # type: ignore[arg-type]
    assert quantities(c, sid) == {"APPLE-1": 1, "WATER": 3}
    assert len(c.staffed.cart(sid).corrections) == 1


def test_resolving_a_resolved_flag_with_another_note_is_refused(c: Container) -> None:
    """The check in the resolution's guarded transaction: of two racing decisions of one
    flag, the second cannot also be recorded as if it had decided the flag."""
    sid = session(c, "d1", [("picked", "WATER", 1, 0.2, 0)])
    c.staffed.claim(session_id=sid, staff_id="ann")
    args = {"session_id": sid, "staff_id": "ann", "device_id": "d1", "device_seq": 0}
    [flag] = c.staffed.resolve_flag(**args, note="reject: not taken")  # type: ignore[arg-type]
    assert flag.note == "reject: not taken"
    assert c.staffed.resolve_flag(**args, note="reject: not taken") == [flag]  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="already resolved by staff ann with the note "
                                       "'reject: not taken'"):
        c.staffed.resolve_flag(**args, note="accept: seen")  # type: ignore[arg-type]
    assert c.staffed.cart(sid).flags == (flag,)


# --- racing decisions, on SQLite and PostgreSQL --------------------------------------------


@pytest.fixture
def cdb(tmp_path: Path, database: str | None) -> Iterator[Container]:
    """As ``c``, on the embedded SQLite and on PostgreSQL."""
    container = bootstrap(Settings(data_dir=tmp_path / "store", database_url=database),
                          processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    container.catalogue.upsert([make_item("WATER", "Sparkling water", 95, "GBP"),
                                make_item("APPLE-1", "Apple", 35, "GBP")])
    yield container
    container.close()


def _race(c: Container, monkeypatch: pytest.MonkeyPatch,
          decisions: list[dict[str, object]]) -> list[object]:
    """Two decisions sent at once: both have read the flag unresolved and worked their
    correction out (held at ``_hold``, which comes after) before either writes. Returns
    each one's outcome or the exception it raised."""
    barrier = threading.Barrier(2, timeout=20)
    hold = ReviewQueue._hold

    def held(self: ReviewQueue, cart: object, staff_id: str) -> bool:
        barrier.wait()
        return hold(self, cart, staff_id)  # type: ignore[arg-type]

    monkeypatch.setattr(ReviewQueue, "_hold", held)
    out: list[object] = [None, None]

    def run(i: int) -> None:
        try:
            out[i] = ReviewQueue.of(c).decide(**decisions[i])  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the test looks at what each got
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    monkeypatch.setattr(ReviewQueue, "_hold", hold)
    return out


def test_two_racing_decisions_of_one_flag_change_the_cart_once(
        cdb: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """Console and API at once (the same staff member): accept (WATER 0 -> 2) and
    correct to 5. Exactly one is made; the other is Conflict naming it; the cart has the
    winner's quantity and one correction."""
    sid = session(cdb, "d1", [("picked", "APPLE-1", 1, 1.0, 0), ("picked", "WATER", 2, 0.2, 1)])
    base: dict[str, object] = {"session_id": sid, "device_id": "d1", "device_seq": 1,
                               "staff_id": "ann", "reason": "checked"}
    out = _race(cdb, monkeypatch, [base | {"decision": "accept"},
                                   base | {"decision": "correct", "corrected_quantity": 5}])
    won = [o for o in out if not isinstance(o, Exception)]
    lost = [o for o in out if isinstance(o, Exception)]
    assert len(won) == 1 and len(lost) == 1, out
    assert isinstance(lost[0], Conflict) and "already resolved by staff ann" in str(lost[0])
    winner = won[0]
    cart = cdb.staffed.cart(sid)
    [correction] = cart.corrections
    assert winner.correction == correction  # type: ignore[attr-defined]
    expected = 2 if winner.decision == "accept" else 5  # type: ignore[attr-defined]
    assert quantities(cdb, sid) == {"APPLE-1": 1, "WATER": expected}
    assert [f.note for f in cart.flags] == [f"{winner.decision}: checked"]  # type: ignore[attr-defined]
    assert cart.claim is None


def test_a_retry_with_another_quantity_racing_the_first_is_refused(
        cdb: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same decision and reason with another count (a retry after a recount): the
    notes are equal, so the quantity tells them apart; one correction stands."""
    sid = session(cdb, "d1", [("put_back", "WATER", 1, 1.0, 0)])
    base: dict[str, object] = {"session_id": sid, "device_id": "d1", "device_seq": 0,
                               "staff_id": "ann", "decision": "correct", "reason": "counted"}
    out = _race(cdb, monkeypatch, [base | {"corrected_quantity": 3},
                                   base | {"corrected_quantity": 4}])
    won = [o for o in out if not isinstance(o, Exception)]
    lost = [o for o in out if isinstance(o, Exception)]
    assert len(won) == 1 and len(lost) == 1, out
    kept = won[0].correction.quantity_after  # type: ignore[attr-defined]
    assert isinstance(lost[0], Conflict) and f"as correct to {kept}" in str(lost[0])
    assert quantities(cdb, sid) == {"WATER": kept}
    assert len(cdb.staffed.cart(sid).corrections) == 1


def test_the_same_decision_sent_twice_at_once_is_made_once(
        cdb: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """A double click: both answers are the one outcome; one correction."""
    sid = session(cdb, "d1", [("picked", "APPLE-1", 1, 1.0, 0), ("picked", "WATER", 2, 0.2, 1)])
    decision: dict[str, object] = {"session_id": sid, "device_id": "d1", "device_seq": 1,
                                   "staff_id": "ann", "decision": "accept", "reason": "seen"}
    first, second = _race(cdb, monkeypatch, [decision, decision])
    assert not isinstance(first, Exception) and not isinstance(second, Exception), (first,
                                                                                    second)
    assert first.correction == second.correction  # type: ignore[attr-defined]
    assert first.flags == second.flags  # type: ignore[attr-defined]
    assert quantities(cdb, sid) == {"APPLE-1": 1, "WATER": 2}
    assert len(cdb.staffed.cart(sid).corrections) == 1


def test_a_line_corrected_while_an_accept_was_worked_out_is_not_overwritten(
        c: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """An accept adds the event to the line as it stood; a correction of that line made
    meanwhile (another till) is not silently replaced: Conflict, nothing written."""
    sid = session(c, "d1", [("picked", "WATER", 1, 1.0, 0), ("picked", "WATER", 2, 0.2, 1)])
    c.staffed.claim(session_id=sid, staff_id="ann")
    hold = ReviewQueue._hold

    def meanwhile(self: ReviewQueue, cart: object, staff_id: str) -> bool:
        c.staffed.correct(session_id=sid, staff_id="ann", product_code="WATER", quantity=6,
                          reason="recounted a crate")
        return hold(self, cart, staff_id)  # type: ignore[arg-type]

    monkeypatch.setattr(ReviewQueue, "_hold", meanwhile)
    with pytest.raises(Conflict, match="WATER was corrected while flag d1#1 was decided"):
        ReviewQueue.of(c).decide(session_id=sid, device_id="d1", device_seq=1,
                                 staff_id="ann", decision="accept", reason="seen")
    cart = c.staffed.cart(sid)
    assert quantities(c, sid) == {"WATER": 6} and len(cart.corrections) == 1
    assert cart.flags[0].resolved_by is None
