"""Every biometric access of a 1:N search is audited, on SQLite and PostgreSQL: the
persons whose stored templates an identification or an enrolment's duplicate check
decrypted and compared each get a ``compare`` entry that shows in their own data export
and names nobody else; a refused duplicate enrolment is audited too; the chain stays
intact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.errors import EnrolmentError
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import Container, bootstrap
from storefront.errors import InvalidInput
from storefront.privacy.export import collect
from storefront.security.audit import NewEntry
from storefront.settings import Settings

PALMS = SyntheticPalms(seed=31)
CONSENT = "2026-11"


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, list[str]]]:
    """Three shoppers, palms 0-2, each enrolled with two captures (as staff would)."""
    c = bootstrap(Settings(data_dir=tmp_path, database_url=database))
    ids = []
    for palm, name in enumerate(("Ann", "Bob", "Cy")):
        s = c.shoppers.register(display_name=name, payment_token=f"tok_{name.lower()}")
        c.shoppers.enrol_palm(shopper_id=s.id, images=[_png(palm, k) for k in range(2)],
                              consent_text_version=CONSENT, actor="staff:kim",
                              store_id="s1")
        ids.append(s.id)
    yield c, ids
    c.close()


def _entries(c: Container, action: str) -> list[tuple[str, str, dict[str, object]]]:
    return [(e.actor, e.subject, e.details) for e in c.audit.entries(limit=1000)
            if e.action == action]


def test_an_identification_audits_each_person_it_compared(
        store: tuple[Container, list[str]]) -> None:
    c, (ann, bob, cy) = store
    before = len(c.audit.entries(limit=1000))
    decision = c.gates.enter_by_palm(image=_png(1, 5), actor="gate-7")
    assert decision.admitted and decision.shopper_id == bob
    new = c.audit.entries(after_seq=before, limit=1000)
    assert [e.action for e in new][0] == "identify"
    assert new[0].subject == f"shopper:{bob}" and new[0].details["compared"] == 3
    compared = {e.subject: e for e in new[1:]}
    assert set(compared) == {f"shopper:{ann}", f"shopper:{cy}"}
    for e in compared.values():
        assert (e.actor, e.action) == ("gate-7", "compare")
        assert e.details == {"purpose": "identification", "store_id": c.settings.store_id,
                             "outcome": "not this person"}
        assert bob not in json.dumps(e.details)
    assert len({e.at for e in new}) == 1  # one transaction, one time
    assert c.audit.verify().ok


def test_enrolment_audits_the_persons_its_duplicate_check_compared(
        store: tuple[Container, list[str]]) -> None:
    c, (ann, bob, cy) = store
    enrolled = _entries(c, "enrol")
    assert [d["outcome"] for _, _, d in enrolled] == ["enrolled"] * 3
    # Bob's duplicate check compared Ann's templates; Cy's compared Ann's and Bob's.
    checks = [(actor, subject) for actor, subject, d in _entries(c, "compare")
              if d["purpose"] == "duplicate_check"]
    assert sorted(checks) == sorted([("staff:kim", f"shopper:{ann}"),
                                     ("staff:kim", f"shopper:{ann}"),
                                     ("staff:kim", f"shopper:{bob}")])
    assert c.audit.verify().ok


def test_a_refused_duplicate_enrolment_is_audited_with_its_comparisons(
        store: tuple[Container, list[str]]) -> None:
    c, (ann, _, _) = store
    eve = c.shoppers.register(display_name="Eve", payment_token="tok_eve").id
    before = len(c.audit.entries(limit=1000))
    with pytest.raises(EnrolmentError, match="another account"):
        c.shoppers.enrol_palm(shopper_id=eve, images=[_png(0, k) for k in range(3, 5)],
                              consent_text_version=CONSENT, actor=f"shopper:{eve}")
    new = c.audit.entries(after_seq=before, limit=1000)
    refused = [e for e in new if e.action == "enrol"]
    assert len(refused) == 1 and refused[0].subject == f"shopper:{eve}"
    assert refused[0].details["outcome"] == "refused"
    assert "another account" in str(refused[0].details["reason"])
    compares = [e for e in new if e.action == "compare"]
    assert f"shopper:{ann}" in {e.subject for e in compares}
    # Ann's palm is the one that matched: her entry says so (not "not this person").
    assert {e.subject: e.details["outcome"] for e in compares}[f"shopper:{ann}"] == (
        "matched: enrolment refused")
    assert all(e.details["outcome"] == "not this person" for e in compares
               if e.subject != f"shopper:{ann}")
    # A shopper enrolling their own palm is never named to the persons compared.
    assert all(e.actor == "shopper (self-service)" and eve not in json.dumps(e.details)
               for e in compares)
    assert c.audit.verify().ok


def test_the_compared_person_sees_the_access_in_their_export_and_nobody_else(
        store: tuple[Container, list[str]]) -> None:
    c, (ann, bob, cy) = store
    assert c.gates.enter_by_palm(image=_png(2, 6), actor="gate-1").shopper_id == cy
    with c.db() as db:
        data = collect(db, ann)
    rows = data["audit_log"]
    assert any(r["action"] == "compare" and json.loads(r["details"])["purpose"]
               == "identification" for r in rows)
    text = json.dumps(rows)
    assert bob not in text and cy not in text


def test_a_bad_entry_in_a_batch_appends_nothing(store: tuple[Container, list[str]]) -> None:
    c, (ann, _, _) = store
    before = c.audit.verify()
    with pytest.raises(InvalidInput, match="not one of"):
        c.audit.record_many([NewEntry("gate-1", "compare", f"shopper:{ann}", {}),
                             NewEntry("gate-1", "peek", f"shopper:{ann}", {})])
    with pytest.raises(InvalidInput, match="actor and a subject"):
        c.audit.record_many([NewEntry("", "compare", f"shopper:{ann}")])
    assert c.audit.record_many([]) == []
    after = c.audit.verify()
    assert after.ok and after.head_seq == before.head_seq


def test_a_palm_refused_as_already_on_this_account_is_audited(
        tmp_path: Path, database: str | None) -> None:
    """Only Ann is enrolled: her second enrolment of the same palm decrypts her own
    templates only (no other person compared) and is refused; the refusal is audited."""
    c = bootstrap(Settings(data_dir=tmp_path, database_url=database))
    try:
        ann = c.shoppers.register(display_name="Ann", payment_token="tok_ann").id
        c.shoppers.enrol_palm(shopper_id=ann, images=[_png(0, k) for k in range(2)],
                              consent_text_version=CONSENT, actor="staff:kim")
        before = len(c.audit.entries(limit=1000))
        with pytest.raises(EnrolmentError, match="on this account"):
            c.shoppers.enrol_palm(shopper_id=ann, images=[_png(0, k) for k in range(3, 5)],
                                  actor=f"shopper:{ann}")
        new = c.audit.entries(after_seq=before, limit=1000)
        assert [(e.action, e.subject, e.details["outcome"]) for e in new] == [
            ("enrol", f"shopper:{ann}", "refused")]
        assert "on this account" in str(new[0].details["reason"])
        assert c.audit.verify().ok
    finally:
        c.close()
