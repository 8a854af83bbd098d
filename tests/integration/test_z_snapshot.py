"""A closed cash drawer's Z report is stored whole at close (``cash_drawers.z_report``) and
read back exactly as given, on SQLite and PostgreSQL: a card tender voided after the Z
report changes neither the card sales nor the tender count read again (``Till.drawer``,
``Till.drawers``, a Z report sent again). A drawer closed before migration 0012 (no stored
report) falls back to the recomputed report with the expected cash stored at close.
Money is integer minor units."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storefront.db.models import CashDrawer
from tests.integration.test_staffed_review_fixes import _card, _cash, _staffed
from tests.integration.test_staffed_void import _void, store  # noqa: F401 (fixture)


def test_a_z_report_reads_back_as_given_after_a_card_void(store: Any) -> None:  # noqa: F811
    c, clock, processor = store
    sid = _staffed(c, clock)  # 2 x TEA = 6.00 GBP
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert card.state == "captured"
    z = c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=1000)
    assert (z.card_sales_minor, z.tenders, z.expected_cash_minor) == (600, 1, 1000)

    voided, _ = c.staffed.void_tender(**_void(sid, card.id))
    assert (voided.state, processor.refunded()) == ("voided", [600])

    assert c.till.drawer(till_id="t1", drawer_id=z.drawer_id) == z
    assert c.till.drawers(till_id="t1") == [z]
    assert c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=1000) == z


def test_a_z_report_reads_back_as_given_after_a_cash_void_from_the_next_drawer(
        store: Any) -> None:  # noqa: F811
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    cash, _ = c.staffed.take_tender(**_cash(sid, "c1", 1000))
    z = c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=1600)
    c.till.open_drawer(till_id="t1", staff_id="bob", float_minor=2000)
    c.staffed.void_tender(**_void(sid, cash.id))
    assert c.till.drawer(till_id="t1", drawer_id=z.drawer_id) == z
    assert (z.cash_sales_minor, z.tenders, z.difference_minor) == (600, 1, 0)


def test_a_drawer_closed_before_the_stored_report_is_recomputed(store: Any) -> None:  # noqa: F811
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    z = c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=1000)
    with c.db.begin() as db:  # as a drawer closed before migration 0012 reads
        db.execute(sa.update(CashDrawer).where(CashDrawer.id == z.drawer_id)
                   .values(z_report=None))
    assert c.till.drawer(till_id="t1", drawer_id=z.drawer_id) == z
    c.staffed.void_tender(**_void(sid, card.id))
    legacy = c.till.drawer(till_id="t1", drawer_id=z.drawer_id)
    # Recomputed from the tenders now: the voided card tender no longer counts, the
    # expected cash is the one stored at close.
    assert (legacy.card_sales_minor, legacy.tenders, legacy.expected_cash_minor,
            legacy.difference_minor) == (0, 0, 1000, 0)
