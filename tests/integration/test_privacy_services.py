"""Privacy services on a real container (SQLite): consent gates enrolment, palm deletion
stops identification, retention sweeps idempotently, exports run in the background, and
account deletion keeps only anonymised accounting records."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.accounts import AuthenticationFailed
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.db.models import Payment, Receipt, Shopper, ShoppingSession
from storefront.errors import Conflict
from storefront.payments import SimulatedProcessor
from storefront.privacy.consent import ConsentRequired
from storefront.privacy.wiring import Privacy, build_privacy
from storefront.settings import Settings

PALMS = SyntheticPalms(4242)


class MovableClock:
    """A clock the test moves forward (tz-aware UTC)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest,
          tmp_path: Path) -> Iterator[tuple[Container, Privacy, MovableClock]]:
    clock = MovableClock()
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    container = bootstrap(Settings(data_dir=tmp_path / "store", database_url=url), clock=clock,
                          processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    container.catalogue.upsert([make_item("APPLE-1", "Apple", 35, "GBP")])
    privacy = build_privacy(container, clock=clock,
                            hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield container, privacy, clock
    container.close()


def _shopper(c: Container, p: Privacy, name: str, palm: int | None) -> str:
    sid = p.accounts.sign_up(email=f"{name}@example.org", password="correct horse battery",
                             display_name=name, payment_token=f"tok_{name}",
                             client_ip="10.0.0.9")
    if palm is not None:
        p.consents.give(shopper_id=sid, purpose="palm_identification", text_version="2026-11")
        c.shoppers.enrol_palm(shopper_id=sid, images=[png(palm, k) for k in range(4)])
    return sid


def _trip(c: Container, shopper_id: str, at: datetime) -> str:
    session_id = c.gates.open_session(shopper_id=shopper_id, entry_method="palm")
    c.ingest.record(session_id=session_id, kind="picked", product_code="APPLE-1", quantity=3,
                    device_id="shelf-7", device_seq=int(at.timestamp()), sensor_time=at)
    result = c.checkout.exit(session_id)
    assert result.status == "paid" and result.receipt_id
    return result.receipt_id


def test_no_consent_no_enrolment_and_withdrawal_deletes_the_palm(store) -> None:  # type: ignore[no-untyped-def]
    c, p, _ = store
    sid = _shopper(c, p, "ann", None)
    with pytest.raises(ConsentRequired):
        c.shoppers.enrol_palm(shopper_id=sid, images=[png(0, k) for k in range(4)])
    assert not c.gates.enter_by_palm(image=png(0, 5)).admitted
    p.consents.give(shopper_id=sid, purpose="palm_identification", text_version="2026-11")
    c.shoppers.enrol_palm(shopper_id=sid, images=[png(0, k) for k in range(4)])
    assert c.gates.enter_by_palm(image=png(0, 5)).shopper_id == sid
    assert p.consents.withdraw(shopper_id=sid) == 1
    assert p.portal.palms(sid) == []
    decision = c.gates.enter_by_palm(image=png(0, 6))
    assert not decision.admitted and decision.outcome == "not_identified"


def test_delete_one_palm_keeps_the_other(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid = _shopper(c, p, "bea", 1)
    clock.now += timedelta(minutes=1)
    c.shoppers.enrol_palm(shopper_id=sid, images=[png(2, k) for k in range(4)])
    first, second = p.portal.palms(sid)
    done = p.deletion.delete_palm(shopper_id=sid, palm_id=first.id)
    assert done.deleted == {"palms": 1, "templates": 4}
    assert [v.id for v in p.portal.palms(sid)] == [second.id]
    assert not c.gates.enter_by_palm(image=png(1, 5)).admitted
    assert c.gates.enter_by_palm(image=png(2, 5)).shopper_id == sid
    c.identity.load()  # a fresh worker rebuilding from the database agrees
    assert not c.gates.enter_by_palm(image=png(1, 6)).admitted


def test_gate_use_is_recorded_and_retention_sweep_is_idempotent(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    kept, dropped = _shopper(c, p, "cid", 3), _shopper(c, p, "dee", 4)
    p.retention.set_periods(shopper_id=dropped, palm_days=30, trip_days=None)
    clock.now += timedelta(days=20)
    assert c.gates.enter_by_palm(image=png(3, 5)).shopper_id == kept
    (palm,) = p.portal.palms(kept)
    assert palm.last_used_at == clock.now and palm.last_used_store == c.settings.store_id
    clock.now += timedelta(days=15)  # dee: 35 days unused (> 30); cid: 15 (< 730)
    report = p.retention.sweep()
    assert report.palms_deleted_for == [dropped] and report.templates_deleted == 4
    assert p.retention.sweep().as_dict() == {"palms_deleted_for": 0, "templates_deleted": 0,
                                             "trips_detached": 0, "archives_deleted": 0,
                                             "codes_deleted": 0, "failed_attempts_deleted": 0}
    assert not c.gates.enter_by_palm(image=png(4, 5)).admitted
    clock.now += timedelta(days=731)
    assert p.retention.sweep().palms_deleted_for == [kept]


def test_trip_retention_detaches_old_trips_only(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid = _shopper(c, p, "eli", None)
    old = _trip(c, sid, clock.now)
    clock.now += timedelta(days=40)
    new = _trip(c, sid, clock.now)
    p.retention.set_periods(shopper_id=sid, palm_days=730, trip_days=30)
    assert p.retention.sweep().trips_detached == 1
    assert p.retention.sweep().trips_detached == 0
    assert [t.receipt_id for t in p.portal.trips(sid)] == [new]
    with c.db() as db:
        kept = db.get(Receipt, old)
        assert kept is not None and kept.total_minor == 105 and kept.shopper_id != sid


def test_export_in_the_background_holds_every_table_and_no_secret(store) -> None:  # type: ignore[no-untyped-def]
    c, p, _ = store
    sid = _shopper(c, p, "fay", 5)
    _trip(c, sid, datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    queued: list[object] = []
    p.exports._start = queued.append  # capture the background job instead of a thread
    p.exports._sync_row_limit = 0
    status = p.exports.request(sid)
    assert status.state == "pending" and len(queued) == 1
    with pytest.raises(Conflict):
        p.exports.download(sid, status.id)
    queued[0]()  # type: ignore[operator]
    assert p.exports.status(sid, status.id).state == "ready"
    archive = zipfile.ZipFile(io.BytesIO(p.exports.download(sid, status.id)))
    data = json.loads(archive.read("data.json"))["tables"]
    assert len(data["receipts"]) == 1 and len(data["palm_templates"]) == 4
    assert "ciphertext" not in data["palm_templates"][0]
    assert "password_hash" not in data["shopper_accounts"][0]
    assert data["biometric_consents"][0]["text_version"] == "2026-11"
    assert "receipts.csv" in archive.namelist() and "cart_events.csv" in archive.namelist()
    assert "correct horse" not in archive.read("data.json").decode()


def test_account_deletion_erases_personal_data_and_keeps_accounts(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid, other = _shopper(c, p, "gil", 6), _shopper(c, p, "hal", 7)
    receipt_id = _trip(c, sid, clock.now)
    open_session = c.gates.open_session(shopper_id=sid, entry_method="app")
    with pytest.raises(Conflict, match="not settled"):
        p.deletion.delete_account(shopper_id=sid)
    c.checkout.exit(open_session)  # an empty cart settles at zero
    done = p.deletion.delete_account(shopper_id=sid)
    assert done.deleted["templates"] == 4 and done.deleted["shopper_accounts"] == 1
    assert done.kept_anonymised["receipts"] == 2  # the zero-total exit issues one too
    with c.db() as db:
        assert db.get(Shopper, sid) is None
        receipt = db.get(Receipt, receipt_id)
        assert receipt is not None and receipt.total_minor == 105
        assert receipt.shopper_id.startswith("erased_")
        for model in (Receipt, Payment, ShoppingSession):
            assert db.scalar(sa.select(sa.func.count()).where(model.shopper_id == sid)) == 0
        raw = json.dumps([list(r) for r in db.execute(sa.text("SELECT * FROM cart_events"))],
                         default=str)
        assert sid not in raw
    assert not c.gates.enter_by_palm(image=png(6, 5)).admitted
    assert c.gates.enter_by_palm(image=png(7, 5)).shopper_id == other
    with pytest.raises(AuthenticationFailed, match="wrong e-mail, password or TOTP code"):
        p.accounts.login(email="gil@example.org", password="correct horse battery",
                         client_ip="10.0.0.1")
