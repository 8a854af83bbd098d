"""The staff console pages over HTTP, driven like a browser: sign in through the login
form, read each page's HTML, fill forms through their visible labels (with the CSRF
token and idempotency key the page rendered) and follow the Post/Redirect/Get flow.

Sessions reach the staffed checkout through the real exit flow (as in
``test_api_staff_checkout.py``): the issuer refuses the card, an event is flagged, or
the cart holds an age-restricted product.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from card_refused import CardRefused as Processor
from fastapi.testclient import TestClient
from html_tree import Node
from html_tree import parse as parse_html

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings

HEBREW = "חלב תנובה 3%"
PRODUCTS = {"WATER": ("Sparkling water 1l", 95), "APPLE-1": ("Apple, each", 35),
            "MILK-3": (HEBREW, 690), "TV-1": ("Small television", 2500)}

# --- a small HTML reader ---------------------------------------------------------------

@dataclass
class Page:
    status: int
    url: str
    html: str
    root: Node

    @property
    def h1(self) -> str:
        return self.root.all("h1")[0].text()

    @property
    def flash(self) -> str:
        found = [n for n in self.root.iter() if "flash" in n.attrs.get("class", "").split()]
        return " ".join(n.text() for n in found)

    def form(self, button: str) -> Node:
        forms = [f for f in self.root.all("form")
                 if any(b.text() == button for b in f.all("button"))]
        assert len(forms) == 1, f"{len(forms)} forms with a {button!r} button on {self.url}"
        return forms[0]

    def has_button(self, button: str) -> bool:
        return any(b.text() == button for b in self.root.all("button"))

    def table(self, caption_starts: str) -> list[list[str]]:
        for table in self.root.all("table"):
            caption = table.all("caption")
            if caption and caption[0].text().startswith(caption_starts):
                return [[cell.text() for cell in row.iter() if cell.tag in ("td", "th")]
                        for row in table.all("tr")[1:]]
        raise AssertionError(f"no table {caption_starts!r} on {self.url}")


def parse(response: Any) -> Page:
    page = Page(response.status_code, str(response.url), response.text,
                parse_html(response.text))
    check_accessible(page)
    return page


def check_accessible(page: Page) -> None:
    """Ids are unique, every visible control has a <label>, no inline style or script."""
    ids = [n.attrs["id"] for n in page.root.iter() if "id" in n.attrs]
    assert len(ids) == len(set(ids)), f"duplicate ids on {page.url}"
    labelled = {n.attrs.get("for") for n in page.root.all("label")}
    for control in page.root.iter():
        if control.tag in ("input", "select", "textarea") \
                and control.attrs.get("type") != "hidden":
            assert control.attrs.get("id") in labelled, (page.url, control.attrs)
    assert "style=" not in page.html and "<style" not in page.html
    assert all("src" in n.attrs for n in page.root.all("script")), "inline script"


def defaults(form: Node) -> dict[str, str]:
    """What a browser would send for the form as rendered."""
    out: dict[str, str] = {}
    for control in form.iter():
        name = control.attrs.get("name")
        if not name:
            continue
        if control.tag == "input":
            if control.attrs.get("type") in ("radio", "checkbox"):
                if "checked" in control.attrs:
                    out[name] = control.attrs.get("value", "on")
            else:
                out[name] = control.attrs.get("value", "")
        elif control.tag == "select":
            options = control.all("option")
            chosen = [o for o in options if "selected" in o.attrs] or options[:1]
            out[name] = chosen[0].attrs.get("value", chosen[0].text()) if chosen else ""
        elif control.tag == "textarea":
            out[name] = control.text()
    return out


def by_label(form: Node, values: dict[str, str]) -> dict[str, str]:
    """Form fields named by their visible labels: text typed, an option's label chosen,
    or a radio button's label picked (value ignored)."""
    out: dict[str, str] = {}
    for text, value in values.items():
        labels = [lab for lab in form.all("label") if lab.text() == text]
        assert len(labels) == 1, f"{len(labels)} labels {text!r}"
        control = form.by_id(labels[0].attrs["for"])
        name = control.attrs["name"]
        if control.attrs.get("type") == "radio":
            out[name] = control.attrs["value"]
        elif control.tag == "select":
            options = [o for o in control.all("option") if o.text() == value
                       or o.attrs.get("value") == value]
            assert options, f"no option {value!r} in {text!r}"
            out[name] = options[0].attrs["value"]
        else:
            out[name] = value
    return out


# --- the store -------------------------------------------------------------------------


@dataclass
class Store:
    app: Any
    api: TestClient
    c: Container
    processor: Processor
    shoppers: int = 0
    devices: dict[str, str] = field(default_factory=dict)

    def session(self, items: dict[str, int], *, exit_: bool = True, refuse: bool = False,
                extra: tuple[tuple[str, str, int, float], ...] = ()) -> str:
        """A session with ``items`` picked (and ``extra`` events: kind, code, qty,
        confidence); exited unless ``exit_`` is False. Returns its id."""
        self.shoppers += 1
        token = f"tok_web_{'x' * self.shoppers}"
        r = self.api.post("/shoppers", json={"display_name": "דנה Dana",
                                             "payment_token": token})
        assert r.status_code == 201, r.text
        sid = self.c.gates.open_session(shopper_id=r.json()["id"], entry_method="palm")
        at = datetime.now(UTC) - timedelta(seconds=60)
        events = [("picked", code, qty, 1.0) for code, qty in items.items()] + list(extra)
        self.devices[sid] = f"shelf-{self.shoppers}"  # (device id, sequence) is store-wide
        for seq, (kind, code, qty, confidence) in enumerate(events):
            r = self.api.post(f"/sessions/{sid}/events", json={
                "kind": kind, "product_code": code, "quantity": qty,
                "device_id": self.devices[sid],
                "device_seq": seq, "confidence": confidence,
                "sensor_time": (at + timedelta(seconds=seq)).isoformat()})
            assert r.status_code == 201, r.text
        if refuse:
            self.processor.refused.add(token)
        if exit_:
            r = self.api.post(f"/sessions/{sid}/exit")
            assert r.status_code == 200, r.text
        return sid

    def staff(self, role: str) -> Staff:
        """A new staff member of ``role``, signed in through the console login form."""
        staff_id = f"{role}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(16)
        made = self.c.security.staff.add(staff_id=staff_id, role=role, password=password)
        client = TestClient(self.app, follow_redirects=False)
        form = {"staff_id": staff_id, "password": password, "next": "/console"}
        if made.totp_secret:
            form["totp"] = pyotp.TOTP(made.totp_secret).now()
        r = client.post("/console/login", data=form)
        assert r.status_code == 303 and r.headers["location"] == "/console", r.text
        return Staff(staff_id, client)


@dataclass
class Staff:
    id: str
    client: TestClient

    def get(self, url: str, status: int = 200) -> Page:
        page = parse(self.client.get(url))
        assert page.status == status, (url, page.status, page.html[:2000])
        return page

    def submit(self, page: Page, button: str, labels: dict[str, str] | None = None,
               raw: dict[str, str] | None = None, status: int = 303) -> Page:
        """Send the form of ``button`` as rendered plus ``labels``/``raw`` values; follow
        the redirect and return the page it leads to (or the answer itself)."""
        form = page.form(button)
        data = defaults(form) | by_label(form, labels or {}) | (raw or {})
        action = form.attrs.get("action", page.url)
        if form.attrs.get("method", "get").lower() == "get":
            r = self.client.get(action, params=data)
        else:
            r = self.client.post(action, data=data)
        assert r.status_code == status, (action, r.status_code, r.text[:2000])
        for _ in range(3):  # Post/Redirect/Get, or a GET form redirecting twice
            if r.status_code != 303:
                break
            r = self.client.get(r.headers["location"])
        page = parse(r)
        assert page.status == 200 or status != 303, (page.url, page.status, page.html[:2000])
        return page


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    processor = Processor(SimulatedProcessor(seed=11, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path / "store"),
                          processor=processor)
    container.catalogue.upsert([make_item(code, name, price, "GBP")
                                for code, (name, price) in PRODUCTS.items()])
    container.catalogue.upsert([make_item("WINE-75", "Red wine 75cl", 899, "GBP",
                                          age_restricted=True)])
    app = create_app(container)
    with authenticated(TestClient(app), container.security,
                       container.settings.store_id) as api:
        yield Store(app, api, container, processor)
    container.close()


def tenders(store: Store, sid: str) -> int:
    return len(store.c.till.tenders(sid))


# --- sign-in and roles -----------------------------------------------------------------


def test_pages_need_sign_in_and_a_checkout_role(store: Store) -> None:
    anonymous = TestClient(store.app, follow_redirects=False)
    for path in ("/console", "/console/checkout", "/console/review", "/console/refunds",
                 "/console/tills", "/console/checkout/ses_1", "/console/receipts/rct_1"):
        r = anonymous.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/login?next=%2Fconsole"), path
    r = anonymous.post("/console/tills/open", data={"till": "till-1", "float": "5"})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    for role in ("auditor", "admin"):
        other = store.staff(role)
        page = other.get("/console", 403)
        assert page.h1 == "Not allowed" and "needs cashier or manager" in page.flash
        other.get("/console/tills", 403)
    cashier = store.staff("cashier")
    page = cashier.get("/console")
    assert page.h1 == "Live sessions"
    nav = {a.text(): a.attrs.get("aria-current") for a in page.root.all("nav")[0].all("a")}
    assert nav["Live sessions"] == "page" and nav["Tills"] is None


def test_live_sessions_show_shoppers_in_the_store(store: Store) -> None:
    sid = store.session({"WATER": 2, "APPLE-1": 3}, exit_=False,
                        extra=(("picked", "MILK-3", 1, 0.1),))
    store.session({"WATER": 1})  # exited and paid: not live
    page = store.staff("cashier").get("/console")
    assert page.root.all("meta", name="sf-refresh")[0].attrs["content"] == "15"
    rows = page.table("Sessions in the store now")
    assert len(rows) == 1
    assert rows[0][0] == sid and "Dana" in rows[0][1] and rows[0][3:] == ["5", "1"]


# --- the staffed checkout --------------------------------------------------------------


def test_cashier_settles_a_staffed_session_over_forms(store: Store) -> None:
    sid = store.session({"WATER": 3, "MILK-3": 1, "WINE-75": 1})
    ann = store.staff("cashier")
    tills = ann.get("/console/tills")
    ann.submit(tills, "Open drawer", {"Till": "till-1", "Float": "50"})
    queue = ann.get("/console/checkout")
    assert queue.h1 == "Staffed checkout"
    link = [a for a in queue.root.all("a") if a.text() == f"Open {sid}"]
    assert link and link[0].attrs["href"] == f"/console/checkout/{sid}"
    waiting = queue.table("Waiting at the staffed checkout")[0]
    assert waiting[1] == "דנה Dana" and "age check" in waiting[2]
    page = ann.get(link[0].attrs["href"])
    assert page.h1 == f"Session {sid}" and page.has_button("Claim session")
    assert any(n.attrs.get("dir") == "auto" and n.text() == HEBREW for n in page.root.iter())
    page = ann.submit(page, "Claim session")
    assert page.has_button("Release claim") and "You hold" in page.flash
    # A correction needs a reason; with one it is made and audited.
    page = ann.submit(page, "Correct line", {"Product": "WATER", "New quantity": "2"})
    assert "Reason is required" in page.flash and not store.c.staffed.cart(sid).corrections
    page = ann.submit(page, "Correct line", {"Product": "WATER", "New quantity": "2",
                                             "Reason": "one bottle went back to the shelf"})
    assert "Corrected WATER: 3 -> 2" in page.flash
    blockers = " ".join(li.text() for li in page.root.all("ul", **{"aria-labelledby":
                                                                   "h-blockers"})[0].all("li"))
    assert "age check required" in blockers and "balance due 17.79 GBP" in blockers
    page = ann.submit(page, "Confirm age checked")
    assert not page.has_button("Confirm age checked")
    assert dict(zip(*[[n.text() for n in page.root.all(t)] for t in ("dt", "dd")],
                    strict=False))["Balance due"] == "17.79 GBP"
    page = ann.submit(page, "Take tender", {"Cash": "", "Amount": "20", "Till": "till-1"})
    assert "change 2.21 GBP" in page.flash and "Balance due 0.00 GBP" in page.flash
    page = ann.submit(page, "Close sale")
    assert page.h1 == "Receipt" and page.url.startswith("http://testserver/console/receipts/rct_")
    items = page.table("Items")
    assert [row[1:] for row in items] == [["1", "6.90 GBP", "—", "6.90 GBP"],
                                          ["2", "0.95 GBP", "—", "1.90 GBP"],
                                          ["1", "8.99 GBP", "—", "8.99 GBP"]]
    assert HEBREW in items[0][0] and any(
        n.tag == "bdi" and n.attrs.get("dir") == "auto" and n.text() == HEBREW
        for n in page.root.iter())
    assert "Total 17.79 GBP" in page.html and "change 2.21 GBP" in page.html
    assert page.root.all("button", type="button")[0].attrs.get("data-print") == ""
    assert "<style" not in page.html and "style=" not in page.html
    assert store.c.read_model.get(sid).status == "settled"
    x = ann.get("/console/tills/till-1")
    assert "Cash sales" in x.html and "17.79 GBP" in x.html and "67.79 GBP" in x.html


def test_a_re_posted_tender_form_takes_the_tender_once(store: Store) -> None:
    sid = store.session({"WATER": 2}, refuse=True)
    ben = store.staff("cashier")
    ben.submit(ben.get("/console/tills"), "Open drawer", {"Till": "till-2", "Float": "0"})
    page = ben.submit(ben.get(f"/console/checkout/{sid}"), "Claim session")
    form = page.form("Take tender")
    data = defaults(form) | by_label(form, {"Amount": "1.00", "Till": "till-2"})
    first = ben.client.post(form.attrs["action"], data=data)
    again = ben.client.post(form.attrs["action"], data=data)
    assert first.status_code == again.status_code == 303
    assert tenders(store, sid) == 1 and store.c.staffed.cart(sid).paid_minor == 100
    fresh = ben.get(f"/console/checkout/{sid}")
    assert defaults(fresh.form("Take tender"))["key"] != data["key"]  # a new key per render
    assert defaults(fresh.form("Take tender"))["amount"] == "0.90"  # the balance due


def test_card_tender_pays_with_the_card_on_file(store: Store) -> None:
    sid = store.session({"WINE-75": 1, "APPLE-1": 2})  # staffed for the age check
    mgr = store.staff("manager")
    page = mgr.submit(mgr.get(f"/console/checkout/{sid}"), "Claim session")
    page = mgr.submit(page, "Confirm age checked")
    page = mgr.submit(page, "Take tender", {"Card": "", "Amount": "9.70"})
    assert "more than the balance due 9.69 GBP" in page.flash and tenders(store, sid) == 0
    page = mgr.submit(page, "Take tender", {"Card": "", "Amount": "9.69"})
    assert "Card payment of 9.69 GBP captured" in page.flash
    assert store.processor.captured_total() == 969
    receipt = mgr.submit(page, "Close sale")
    assert "Card 9.69 GBP" in receipt.html and receipt.h1 == "Receipt"


# --- the review queue ------------------------------------------------------------------


def test_review_queue_accept_correct_and_reject(store: Store) -> None:
    accept = store.session({"APPLE-1": 1}, extra=(("picked", "WATER", 2, 0.2),))
    correct = store.session({"APPLE-1": 1}, extra=(("put_back", "WATER", 1, 1.0),))
    reject = store.session({"APPLE-1": 1}, extra=(("put_back", "APPLE-1", 3, 1.0),))
    live = store.session({"WATER": 1}, exit_=False, extra=(("put_back", "TV-1", 1, 1.0),))
    cat = store.staff("cashier")
    page = cat.get("/console/review")
    rows = page.table("Unresolved flags")
    assert [row[0].split()[0] for row in rows] == [accept, correct, reject, live]
    assert [row[4] for row in rows] == ["low_confidence", "put_back_not_picked",
                                        "put_back_exceeds_picked", "put_back_not_picked"]
    assert "Not yet" in rows[3][6] and "Resolve" not in rows[3][6]
    decide = next(f for f in page.root.all("form") if accept in f.attrs.get("aria-label", ""))
    options = [o.text() for o in decide.all("option")]
    assert options == ["Accept", "Correct", "Reject"]
    page = cat.submit(page, _resolve_of(page, accept), {"Decision": "Accept",
                                                         "Reason": "camera saw it"})
    assert "resolved (accept; WATER 0 -> 2)" in page.flash
    assert store.c.staffed.cart(accept).total_minor == 35 + 2 * 95
    assert store.c.staffed.cart(accept).claim is None  # the review's claim was given back
    page = cat.submit(page, _resolve_of(page, correct), {
        "Decision": "Correct", "Corrected quantity": "1", "Reason": "water is in the bag"})
    assert "WATER 0 -> 1" in page.flash
    page = cat.submit(page, _resolve_of(page, reject), {
        "Decision": "Reject", "Reason": "nothing was put back"})
    assert "APPLE-1 0 -> 1" in page.flash
    assert [row[0].split()[0] for row in page.table("Unresolved flags")] == [live]
    for sid, lines in ((correct, {"APPLE-1": 1, "WATER": 1}), (reject, {"APPLE-1": 1})):
        cart = store.c.staffed.cart(sid)
        assert {line["code"]: line["quantity"] for line in cart.lines} == lines
        assert all(f.resolved_by == cat.id for f in cart.flags)
        assert not any(b.startswith("unresolved") for b in cart.blockers)
    # A live session's flag is refused with the reason; nothing is written.
    r = cat.client.post("/console/review/decide", data={
        "csrf": defaults(page.root.all("form")[0])["csrf"], "session_id": live,
        "device_id": store.devices[live], "device_seq": "1", "decision": "accept", "reason": "ok"})
    assert "decided at the staffed checkout" in cat.get(r.headers["location"]).flash
    assert store.c.staffed.cart(live).flags[0].resolved_by is None


def _resolve_of(page: Page, session_id: str) -> str:
    """Make the decision form of ``session_id`` the only one with a Resolve button."""
    for form in page.root.all("form"):
        if session_id not in form.attrs.get("aria-label", ""):
            for button in form.all("button"):
                button.children = ["(other)"]
    return "Resolve"


def test_review_correction_over_the_cashier_limit_is_refused(store: Store) -> None:
    sid = store.session({"APPLE-1": 1}, extra=(("put_back", "WATER", 1, 1.0),))
    cashier = store.staff("cashier")
    page = cashier.submit(cashier.get("/console/review"), "Resolve", {
        "Decision": "Correct", "Corrected quantity": "25", "Reason": "a crate of water"})
    assert "over your limit of 20" in page.flash
    cart = store.c.staffed.cart(sid)
    assert not cart.corrections and cart.flags[0].resolved_by is None and cart.claim is None
    mgr = store.staff("manager")
    page = mgr.submit(mgr.get("/console/review"), "Resolve", {
        "Decision": "Correct", "Corrected quantity": "25", "Reason": "a crate of water"})
    assert "WATER 0 -> 25" in page.flash


# --- refunds ---------------------------------------------------------------------------


def test_refunds_within_and_over_the_cashier_limit(store: Store) -> None:
    sid = store.session({"WATER": 2, "TV-1": 1, "MILK-3": 1})  # paid by card at the exit
    receipt_id = store.c.carts.state(sid).receipt_id
    assert receipt_id is not None
    dan = store.staff("cashier")
    page = dan.get("/console/refunds")
    assert page.h1 == "Refunds"
    missing = dan.submit(page, "Find receipt", {"Receipt id": "rct_nope"})
    assert "does not exist" in missing.flash and missing.h1 == "Refunds"
    page = dan.submit(page, "Find receipt", {"Receipt id": receipt_id})
    assert page.url.endswith(f"/console/refunds/{receipt_id}")
    assert any(n.attrs.get("dir") == "auto" and n.text() == HEBREW for n in page.root.iter())
    over = dan.submit(page, "Refund", {"Product": "TV-1", "Quantity": "1",
                                       "Reason": "broken screen"})
    assert "over your limit of 20.00 GBP" in over.flash
    assert store.processor.refunds == [] and store.c.receipts.get(receipt_id).amended_by is None
    done = dan.submit(page, "Refund", {"Product": "WATER", "Quantity": "1",
                                       "Reason": "flat water"})
    assert done.h1 == "Receipt" and "Refunded 0.95 GBP (card 0.95 GBP" in done.flash
    assert [row[1] for row in done.table("Items")] == ["1", "1", "1"]
    assert store.processor.refunds == [95]
    # The same rendered form again: the same dispute key, refunded once.
    again = dan.submit(page, "Refund", {"Product": "WATER", "Quantity": "1",
                                        "Reason": "flat water"})
    assert again.url == done.url and store.processor.refunds == [95]
    mgr = store.staff("manager")
    page = mgr.get(f"/console/refunds/{receipt_id}")
    assert "Showing the latest version" in page.html
    done = mgr.submit(page, "Refund", {"Product": "TV-1", "Quantity": "1",
                                       "Reason": "broken screen"})
    assert "Refunded 25.00 GBP" in done.flash and store.processor.refunds == [95, 2500]
    mgr.get("/console/refunds/rct_unknown", 404)


# --- tills -----------------------------------------------------------------------------


def test_tills_open_x_and_z_for_managers_only(store: Store) -> None:
    eve = store.staff("cashier")
    page = eve.get("/console/tills")
    assert page.h1 == "Tills" and not page.has_button("Close drawer (Z report)")
    assert "Only a manager can close a drawer" in page.html
    x = eve.submit(page, "Open drawer", {"Till": "till-7", "Float": "120.50"})
    assert x.h1 == "X report: till till-7" and "Drawer opened" in x.flash
    facts = dict(zip([n.text() for n in x.root.all("dt")], [n.text() for n in x.root.all("dd")],
                     strict=True))
    assert facts["Float"] == "120.50 GBP" and facts["Expected cash"] == "120.50 GBP"
    assert {"Cash sales", "Card sales", "Change given", "Cash refunds"} <= set(facts)
    again = eve.submit(page, "Show X report", {"Till": "till-7"})
    assert again.h1 == "X report: till till-7"
    assert "no cash drawer is open at till till-8" in eve.submit(
        page, "Show X report", {"Till": "till-8"}).flash
    refused = eve.client.post("/console/tills/close", data={
        "csrf": defaults(page.form("Open drawer"))["csrf"], "till": "till-7",
        "counted": "120.50"})
    assert refused.status_code == 403 and "needs manager" in parse(refused).flash
    assert store.c.till.x_report(till_id="till-7").float_minor == 12050  # still open
    mgr = store.staff("manager")
    z = mgr.submit(mgr.get("/console/tills"), "Close drawer (Z report)",
                   {"Till": "till-7", "Counted cash": "120.00"}, status=200)
    facts = dict(zip([n.text() for n in z.root.all("dt")], [n.text() for n in z.root.all("dd")],
                     strict=True))
    assert z.h1 == "Z report: till till-7"
    assert (facts["Expected cash"], facts["Counted cash"]) == ("120.50 GBP", "120.00 GBP")
    assert facts["Difference"] == "-0.50 GBP (cash missing)"
    closed = eve.client.get("/console/tills/till-7")  # the drawer is closed: back to tills
    assert closed.status_code == 303 and closed.headers["location"] == "/console/tills"
    assert "no cash drawer is open at till till-7" in eve.get("/console/tills").flash


# --- refused requests change nothing ---------------------------------------------------


def test_missing_or_wrong_csrf_token_is_refused(store: Store) -> None:
    sid = store.session({"WATER": 1}, refuse=True)
    fay = store.staff("cashier")
    page = fay.get(f"/console/checkout/{sid}")
    data = defaults(page.form("Claim session"))
    for bad in ({k: v for k, v in data.items() if k != "csrf"}, data | {"csrf": "0" * 64}):
        r = fay.client.post(f"/console/checkout/{sid}/claim", data=bad)
        assert r.status_code == 403 and "out of date" in parse(r).flash
    other_site = fay.client.post(f"/console/checkout/{sid}/claim", data=data,
                                 headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert store.c.staffed.cart(sid).claim is None
    tills = fay.get("/console/tills")
    form = defaults(tills.form("Open drawer")) | {"float": "10", "csrf": "nope"}
    assert fay.client.post("/console/tills/open", data=form).status_code == 403
    assert fay.client.get("/console/tills/till-1").status_code == 303  # no drawer was opened


def test_malformed_input_is_explained_and_changes_nothing(store: Store) -> None:
    sid = store.session({"WATER": 1}, refuse=True)
    gus = store.staff("cashier")
    gus.submit(gus.get("/console/tills"), "Open drawer", {"Till": "till-1", "Float": "5"})
    page = gus.submit(gus.get(f"/console/checkout/{sid}"), "Claim session")
    before = store.c.staffed.cart(sid)
    cases = [
        ("Take tender", {"Amount": "12,5x"}, "Amount must be an amount like 12.50"),
        ("Take tender", {"Amount": "-1"}, "Amount must be an amount like 12.50"),
        ("Take tender", {"Amount": "99999999999999"}, "Amount must be an amount like 12.50"),
        ("Take tender", {"Amount": "10000000.01"}, "Amount must be from"),
        ("Take tender", {"Amount": "0"}, "Amount must be from 0.01"),
        ("Take tender", {"Amount": "1", "Till": "no such till"}, "Till must be"),
        ("Take tender", {"Amount": "1", "Till": "till-9"}, "no cash drawer is open"),
        ("Correct line", {"Product": "WATER", "New quantity": "-1", "Reason": "x"},
         "New quantity must be a whole number"),
        ("Correct line", {"Product": "WATER", "New quantity": "10000000000", "Reason": "x"},
         "New quantity must be a whole number"),
        ("Correct line", {"Other product code": "NOPE", "New quantity": "1", "Reason": "x"},
         "not in the catalogue"),
        ("Correct line", {"New quantity": "1", "Reason": "x"}, "choose a product"),
        ("Correct line", {"Product": "WATER", "New quantity": "30", "Reason": "x"},
         "over your limit of 20"),
        ("Close sale", {}, "balance due 0.95 GBP"),
    ]
    for button, labels, message in cases:
        answer = gus.submit(page, button, labels)
        assert message in answer.flash, (labels, answer.flash)
    raw = gus.submit(page, "Take tender", raw={"kind": "cheque", "amount": "1"})
    assert "choose the tender" in raw.flash
    assert store.c.staffed.cart(sid) == before
    assert store.c.till.x_report(till_id="till-1").tenders == 0
    assert gus.get("/console/checkout/ses_unknown", 404).h1 == "Not found"
    assert gus.get("/console/checkout/bad%20id!", 422).status == 422
    assert gus.get("/console/receipts/rct_unknown", 404).h1 == "Not found"
    r = gus.client.post("/console/checkout/ses_unknown/claim",
                        data={"csrf": defaults(page.form("Close sale"))["csrf"]})
    assert r.status_code == 303
    assert "does not exist" in gus.get(r.headers["location"], 404).flash
