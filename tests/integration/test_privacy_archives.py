"""Stored data exports: sealed under a key of their own (never the shopper's template data
key), expiring (410 and deleted), limited per shopper (429 with a wait), deleted by the
retention sweep when they hold what it removed and by every palm deletion, consent
withdrawal and account deletion (a build racing one stores nothing); kept trips' times
cut to the day on erasure; delete entries name the shopper acting as ``shopper:<id>``.
SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.accounts import TooManyAttempts
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.db.models import PrivacyExport, ShopperAccount, ShoppingSession, SubjectKey
from storefront.errors import Gone, NotFound
from storefront.payments import SimulatedProcessor
from storefront.privacy.archives import MAGIC
from storefront.privacy.wiring import Privacy, build_privacy
from storefront.settings import Settings

PALMS = SyntheticPalms(777)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 4, 13, 27, 11, 250_000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(database: str | None, tmp_path: Path) -> Iterator[tuple[Container, Privacy, Clock]]:
    clock = Clock()
    c = bootstrap(Settings(data_dir=tmp_path / "store", database_url=database), clock=clock,
                  processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    c.catalogue.upsert([make_item("APPLE-1", "Apple", 35, "GBP")])
    yield c, build_privacy(c, clock=clock), clock
    c.close()


def _shopper(c: Container, name: str, palm: int | None = None) -> str:
    sid = c.shoppers.register(display_name=name, payment_token=f"tok_{name}").id
    if palm is not None:
        c.shoppers.enrol_palm(shopper_id=sid, consent_text_version="2026-11",
                              images=[encode_png(PALMS.capture(palm, k)) for k in range(3)])
    return sid


def _trip(c: Container, sid: str, clock: Clock) -> str:
    session_id = c.gates.open_session(shopper_id=sid, entry_method="app")
    c.ingest.record(session_id=session_id, kind="picked", product_code="APPLE-1", quantity=1,
                    device_id="shelf-1", device_seq=int(clock.now.timestamp()),
                    sensor_time=clock.now)
    assert c.checkout.exit(session_id).status == "paid"
    return session_id


def _keys(c: Container, sid: str) -> int:
    """Data key rows of the shopper in ``subject_keys``."""
    with c.db() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(SubjectKey)
                             .where(SubjectKey.subject_id == sid)) or 0)


def _stored(c: Container, job_id: str) -> PrivacyExport:
    with c.db() as db:
        row = db.get(PrivacyExport, job_id)
        assert row is not None
        return row


def test_archive_is_sealed_at_rest_and_expires(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid = _shopper(c, "Zelda Quartermain")
    job = p.exports.request(sid)
    assert job.state == "ready" and job.expires_at == job.finished_at + timedelta(days=7)
    raw = _stored(c, job.id).archive
    assert raw is not None and raw.startswith(MAGIC) and b"PK" not in raw[:8]
    assert _keys(c, sid) == 0  # its own key: a shopper without palms gets no data key
    assert b"Zelda" not in raw and b"data.json" not in raw  # not a readable zip
    data = json.loads(zipfile.ZipFile(io.BytesIO(p.exports.download(sid, job.id)))
                      .read("data.json"))
    assert data["tables"]["shoppers"][0]["display_name"] == "Zelda Quartermain"
    clock.now += timedelta(days=7, seconds=1)
    with pytest.raises(Gone, match="expired"):
        p.exports.download(sid, job.id)
    row = _stored(c, job.id)
    assert row.state == "expired" and row.archive is None and "expired" in (row.error or "")
    with pytest.raises(Gone):  # still gone, and another shopper still gets 404
        p.exports.download(sid, job.id)
    with pytest.raises(NotFound):
        p.exports.download(_shopper(c, "Other"), job.id)


def test_requests_are_limited_per_shopper(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid, other = _shopper(c, "Ann"), _shopper(c, "Bob")
    p.exports.request(sid)
    clock.now += timedelta(seconds=20)
    with pytest.raises(TooManyAttempts, match="one data export per 1 minute") as too_soon:
        p.exports.request(sid)
    assert too_soon.value.retry_after_s == 40
    p.exports.request(other)  # another shopper is not held back
    for _ in range(2):
        clock.now += timedelta(seconds=61)
        p.exports.request(sid)
    clock.now += timedelta(seconds=61)
    with pytest.raises(TooManyAttempts, match="at most 3 data exports") as too_many:
        p.exports.request(sid)
    first_expiry = timedelta(days=7) - timedelta(seconds=20 + 3 * 61)
    assert too_many.value.retry_after_s == int(first_expiry.total_seconds())
    with c.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(PrivacyExport)
                         .where(PrivacyExport.shopper_id == sid)) == 3
    clock.now += first_expiry
    assert p.exports.request(sid).state == "ready"  # the oldest expired and was deleted
    with pytest.raises(NotFound):
        p.exports.request("shp_nobody")


def test_palm_deletion_deletes_the_archive(store) -> None:  # type: ignore[no-untyped-def]
    c, p, _ = store
    sid = _shopper(c, "Cid", palm=1)
    job = p.exports.request(sid)
    assert p.exports.download(sid, job.id)[:2] == b"PK"
    done = p.deletion.delete_all_palms(shopper_id=sid)
    assert done.deleted == {"palms": 1, "templates": 3, "exports": 1}
    assert _keys(c, sid) == 0
    with pytest.raises(Gone, match="palm data it held was deleted"):
        p.exports.download(sid, job.id)
    assert _stored(c, job.id).archive is None
    (entry,) = [e for e in c.audit.entries(subject=f"shopper:{sid}") if e.action == "delete"]
    assert entry.actor == f"shopper:{sid}"  # the shopper acting on their own data


def test_sweep_deletes_archives_holding_detached_trips(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid, bystander = _shopper(c, "Dee"), _shopper(c, "Eve")
    _trip(c, sid, clock)
    p.retention.set_periods(shopper_id=sid, palm_days=730, trip_days=30)
    clock.now += timedelta(days=31)
    held, kept = p.exports.request(sid), p.exports.request(bystander)
    report = p.retention.sweep()
    assert report.trips_detached == 1 and report.archives_deleted == 1
    gone = p.exports.status(sid, held.id)
    assert gone.state == "expired" and gone.size_bytes is None and "retention" in gone.error
    assert p.exports.status(bystander, kept.id).state == "ready"
    assert p.retention.sweep().archives_deleted == 0  # idempotent
    clock.now += timedelta(days=8)
    assert p.retention.sweep().archives_deleted == 1  # an expired one always goes
    with c.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(PrivacyExport)
                         .where(PrivacyExport.archive.is_not(None))) == 0


def test_a_build_overtaken_by_the_sweep_stores_nothing(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid = _shopper(c, "Fay")
    _trip(c, sid, clock)
    queued: list[object] = []
    p.exports._start = queued.append
    p.exports._sync_row_limit = 0
    job = p.exports.request(sid)
    assert job.state == "pending"
    assert p.exports.drop_archives(sid, before=clock.now) == 1
    queued[0]()  # type: ignore[operator]
    assert p.exports.status(sid, job.id).state == "expired"
    assert _stored(c, job.id).archive is None


def test_erasure_cuts_kept_trip_times_to_the_day(store) -> None:  # type: ignore[no-untyped-def]
    c, p, clock = store
    sid = _shopper(c, "Gil")
    session_id = _trip(c, sid, clock)
    p.deletion.delete_account(shopper_id=sid, actor="staff:m1")
    with c.db() as db:
        row = db.get(ShoppingSession, session_id)
        assert row is not None and row.shopper_id.startswith("erased_")
        midnight = datetime(2026, 5, 4, tzinfo=UTC)
        assert row.opened_at == midnight and row.exited_at == midnight
    (entry,) = [e for e in c.audit.entries(subject=f"shopper:{sid}") if e.action == "delete"
                and e.details["what"] == "account"]
    assert entry.actor == "staff:m1"


def test_export_holds_no_totp_secret_but_the_last_step(store) -> None:  # type: ignore[no-untyped-def]
    """A real export of a shopper with TOTP on: the password hash and the TOTP secret (in
    clear or sealed) are nowhere in the archive; ``totp_last_step`` (the 30-second step of
    the last accepted code, i.e. when the shopper last signed in with TOTP) is exported: it
    is about the shopper, and no code can be made from it."""
    c, _, clock = store
    p = build_privacy(c, clock=clock, hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
    sid = p.accounts.sign_up(email="tia@example.org", password="correct horse battery",
                             display_name="Tia", payment_token="tok_tia", client_ip="10.0.0.1")
    totp = pyotp.parse_uri(p.accounts.totp_enrol(sid))
    assert isinstance(totp, pyotp.TOTP)
    p.accounts.totp_verify(sid, totp.now())
    with c.db() as db:
        account = db.get(ShopperAccount, sid)
        assert account is not None and account.totp_secret_sealed and account.totp_last_step
        sealed, step, hashed = (bytes(account.totp_secret_sealed), account.totp_last_step,
                                account.password_hash)
    raw = p.exports.download(sid, p.exports.request(sid).id)
    archive = zipfile.ZipFile(io.BytesIO(raw))
    (row,) = json.loads(archive.read("data.json"))["tables"]["shopper_accounts"]
    assert not {"password_hash", "totp_secret", "totp_secret_sealed"} & set(row)
    assert row["totp_last_step"] == step and row["totp_enabled"] is True
    text = b"".join(archive.read(name) for name in archive.namelist())
    for secret in (totp.secret.encode(), sealed.hex().encode(), hashed.encode()):
        assert secret not in text
