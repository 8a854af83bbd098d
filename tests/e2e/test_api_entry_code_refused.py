"""A shopper who may not enter (an unpaid balance) gets no app entry code: 403 with the
reason, as the gate would answer it, instead of a code the gate then refuses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def test_an_unpaid_balance_refuses_the_entry_code(make_store: Any) -> None:
    store = make_store()
    c = store.container
    shopper = store.register("Owen")
    auth = {"Authorization": f"Bearer {store.bearers[shopper]}"}
    assert store.client.post("/me/entry-code", headers=auth).status_code == 201
    long_ago = c.checkout.clock() - timedelta(days=1)
    c.read_model.opened(session_id="ses_owed", shopper_id=shopper, store_id=c.settings.store_id,
                        entry_method="palm", at=long_ago)
    c.read_model.update("ses_owed", status="staffed", exited_at=long_ago, total_minor=500,
                        staffed_reason="payment declined")
    body = store.error_of(store.client.post("/me/entry-code", headers=auth), 403)
    assert "unpaid balance of 500 minor units from session ses_owed" in body["reason"]
