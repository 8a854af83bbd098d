"""Voiding a tender from the staff console's session page, over HTTP as a browser would
(see ``test_web_console.py``): a manager voids a cashier's cash and card tenders with a
reason through the labelled form (the cashier's claim is enough), the void is audited and
sent again changes nothing; a cashier sees no form and a cashier's post is refused (403)
as the API refuses it; bad tokens, origins, tenders and sessions change nothing. Money
is integer minor units."""

from __future__ import annotations

from test_web_console import Page, Staff, Store, defaults, parse, store  # noqa: F401

from storefront.security.audit import AuditRecord

CARD = "tok_till_card"


def _voids(shop: Store, sid: str) -> list[AuditRecord]:
    """The session's ``tender_voided`` audit entries, oldest first."""
    return [e for e in shop.c.audit.entries(subject=f"session:{sid}", limit=1000)
            if e.action == "tender_voided"]


def _paid_twice(shop: Store) -> tuple[str, Staff, str, str]:
    """A staffed 1.90 GBP sale a cashier paid with 1.00 GBP cash at till-1 and 0.90 GBP
    on a card, still holding the claim. Returns (session, cashier, cash id, card id)."""
    sid = shop.session({"WATER": 2}, refuse=True)
    cat = shop.staff("cashier")
    cat.submit(cat.get("/console/tills"), "Open drawer", {"Till": "till-1", "Float": "5"})
    page = cat.submit(cat.get(f"/console/checkout/{sid}"), "Claim session")
    page = cat.submit(page, "Take tender", {"Cash": "", "Amount": "1.00"})
    cat.submit(page, "Take tender", {"Card": "", "Amount": "0.90", "Card token": CARD})
    cash, card = shop.c.till.tenders(sid)
    assert (cash.state, card.state) == ("taken", "captured")
    return sid, cat, cash.id, card.id


def _options(page: Page) -> dict[str, str]:
    """The void form's tender choices: value -> visible text."""
    select = page.root.by_id(page.form("Void tender").all("label")[0].attrs["for"])
    return {o.attrs["value"]: o.text() for o in select.all("option")}


def test_a_manager_voids_tenders_from_the_session_page(store: Store) -> None:  # noqa: F811
    sid, cat, cash, card = _paid_twice(store)
    # The cashier sees why there is no form; a post of one anyway is refused as by the API.
    mine = cat.get(f"/console/checkout/{sid}")
    assert not mine.has_button("Void tender")
    assert "Only a manager can void a tender" in mine.html
    refused = cat.client.post(f"/console/checkout/{sid}/void", data={
        "csrf": defaults(mine.form("Close sale"))["csrf"], "tender_id": cash,
        "reason": "wrong"})
    assert refused.status_code == 403 and "needs manager" in parse(refused).flash
    assert store.c.till.tenders(sid)[0].state == "taken" and _voids(store, sid) == []

    mgr = store.staff("manager")
    page = mgr.get(f"/console/checkout/{sid}")  # not claimed by the manager: the cashier's is
    form = page.form("Void tender")
    [button] = form.all("button")
    assert form.attrs["method"] == "post" and "danger" in button.attrs["class"]
    # Native controls only, none taken out of the Tab order: usable by keyboard alone.
    assert button.attrs["type"] == "submit" and not any("tabindex" in n.attrs
                                                         for n in form.iter())
    assert _options(page) == {cash: f"Cash 1.00 GBP at till-1, taken ({cash})",
                              card: f"Card 0.90 GBP at till-1, captured ({card})"}
    assert "required" in page.root.by_id("v-reason").attrs  # the reason, by its label
    empty = mgr.submit(page, "Void tender", {"Tender": cash})
    assert "Reason is required" in empty.flash and _voids(store, sid) == []

    done = mgr.submit(page, "Void tender", {"Tender": cash, "Reason": "shopper paid twice"})
    assert done.flash == (f"Tender {cash} voided: 1.00 GBP cash paid back out of the drawer "
                          f"at till till-1. Balance due 1.00 GBP.")
    note = done.table("Tenders taken")[0][-1]
    assert note == f"Voided by {mgr.id}: shopper paid twice"
    assert list(_options(done)) == [card]  # only the card can still be voided
    [entry] = _voids(store, sid)
    assert (entry.actor, entry.details["tender_id"], entry.details["reason"],
            entry.details["voided_minor"]) == (f"staff:{mgr.id}", cash, "shopper paid twice",
                                               100)
    # The same rendered form sent again: nothing more is paid out or audited.
    again = mgr.submit(page, "Void tender", {"Tender": cash, "Reason": "shopper paid twice"})
    assert f"Tender {cash} voided" in again.flash and len(_voids(store, sid)) == 1
    assert store.c.till.x_report(till_id="till-1").cash_voids_minor == 100

    done = mgr.submit(done, "Void tender", {"Tender": card, "Reason": "wrong card"})
    assert "0.90 GBP refunded to the card (refund " in done.flash
    assert "Balance due 1.90 GBP." in done.flash and store.processor.refunds == [90]
    assert not done.has_button("Void tender") and "Void a tender" not in done.html
    assert store.c.staffed.cart(sid).paid_minor == 0
    assert len(_voids(store, sid)) == 2 and store.c.audit.verify().ok


def test_void_posts_that_are_refused_change_nothing(store: Store) -> None:  # noqa: F811
    sid, cat, cash, _ = _paid_twice(store)
    mgr = store.staff("manager")
    page = mgr.get(f"/console/checkout/{sid}")
    data = defaults(page.form("Void tender")) | {"tender_id": cash, "reason": "x"}
    action = f"/console/checkout/{sid}/void"
    for bad in ({k: v for k, v in data.items() if k != "csrf"}, data | {"csrf": "0" * 64}):
        r = mgr.client.post(action, data=bad)
        assert r.status_code == 403 and "out of date" in parse(r).flash
    assert mgr.client.post(action, data=data,
                           headers={"Origin": "https://evil.example"}).status_code == 403
    unknown = mgr.submit(page, "Void tender", raw={"tender_id": "tnd_unknown", "reason": "x"})
    assert "no tender 'tnd_unknown'" in unknown.flash
    bad_id = mgr.submit(page, "Void tender", raw={"tender_id": "no such id!", "reason": "x"})
    assert "Tender must be 1-64 letters" in bad_id.flash
    # Without a claim (the cashier gave it up) the void is refused with the reason.
    cat.submit(cat.get(f"/console/checkout/{sid}"), "Release claim")
    unclaimed = mgr.submit(page, "Void tender", {"Tender": cash, "Reason": "x"})
    assert "must be claimed first" in unclaimed.flash
    assert [t.state for t in store.c.till.tenders(sid)] == ["taken", "captured"]
    assert _voids(store, sid) == [] and store.processor.refunds == []
    # A closed sale shows no void form, and a post for it is refused.
    cat.submit(cat.get(f"/console/checkout/{sid}"), "Claim session")
    cat.submit(cat.get(f"/console/checkout/{sid}"), "Close sale")
    closed = mgr.get(f"/console/checkout/{sid}")
    assert not closed.has_button("Void tender")
    r = mgr.client.post(action, data=data)
    assert "not at the staffed checkout" in mgr.get(r.headers["location"]).flash
    assert _voids(store, sid) == []
