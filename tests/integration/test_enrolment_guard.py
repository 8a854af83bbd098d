"""Palm enrolment is the shopper's own act and its final write is serialised with consent
withdrawal and palm / account deletion (SQLite and PostgreSQL): enrolment codes (single
use, per shopper, per purpose, expiring, throttled), races with threads whichever order
they commit in, and single-palm deletion leaving no snapshot copy and no data key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from identity.errors import TemplateDecryptionError
from storefront.accounts import TooManyAttempts
from storefront.bootstrap import Container, bootstrap, palm_index_snapshot_path
from storefront.db.models import (
    BiometricConsent,
    EntryCode,
    PalmEnrolment,
    PalmTemplate,
    Shopper,
    SubjectKey,
)
from storefront.errors import Conflict, EntryRefused, Gone, NotFound
from storefront.payments import SimulatedProcessor
from storefront.privacy import enrolment_guard
from storefront.privacy.consent import ConsentRequired
from storefront.privacy.enrolment_codes import EnrolmentCodeRefused, EnrolmentCodeService
from storefront.privacy.one_time_codes import digest
from storefront.privacy.wiring import Privacy, build_privacy
from storefront.settings import Settings
from tests.integration.test_privacy_services import MovableClock, png

CONSENT = "2026-11"


World = tuple[Container, Privacy, MovableClock]


@pytest.fixture
def world(database: str | None, tmp_path: Path) -> Iterator[World]:
    clock = MovableClock()
    container = bootstrap(Settings(data_dir=tmp_path / "store", database_url=database),
                          clock=clock, processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    privacy = build_privacy(container, clock=clock,
                            hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield container, privacy, clock
    container.close()


def _sign_up(p: Privacy, name: str, consent: bool = True) -> str:
    sid = p.accounts.sign_up(email=f"{name}@example.org", password="correct horse battery",
                             display_name=name, payment_token=f"tok_{name}",
                             client_ip="10.0.0.9")
    if consent:
        p.consents.give(shopper_id=sid, purpose="palm_identification", text_version=CONSENT)
    return sid


def _held(c: Container, sid: str) -> dict[str, int]:
    """Rows of the shopper's palm data left in the database."""
    with c.db() as db:
        return {model.__tablename__: int(db.scalar(
            sa.select(sa.func.count()).select_from(model).where(column == sid)) or 0)
            for model, column in ((PalmTemplate, PalmTemplate.shopper_id),
                                  (PalmEnrolment, PalmEnrolment.shopper_id),
                                  (SubjectKey, SubjectKey.subject_id))}


def _identified(c: Container, palm: int) -> str | None:
    return c.identity.identify(image=png(palm, 5)).subject_id


def _hook_encrypt(c: Container, action: Callable[[], Any]) -> None:
    """Run ``action`` once, in the enrolling thread, when the enrolment starts encrypting
    (after the image work and the duplicate check, before the final write)."""
    cipher: Any = c.identity._cipher  # noqa: SLF001 - the seam the race goes through
    original, done = cipher.encrypt, []

    def encrypt(subject_id: str, data: bytes) -> bytes:
        if not done:
            done.append(True)
            action()
        return original(subject_id, data)

    cipher.encrypt = encrypt


def test_enrolment_code_is_single_use_per_shopper_and_purpose(world: World) -> None:
    c, p, clock = world
    ann, bob = _sign_up(p, "ann", consent=False), _sign_up(p, "bob", consent=False)
    issued = p.enrolment_codes.issue(ann)
    assert issued.expires_at == clock.now + timedelta(minutes=10)
    with c.db() as db:
        row = db.get(EntryCode, digest(issued.code))
        assert row is not None and row.purpose == "enrolment" and row.shopper_id == ann
        assert db.scalar(sa.select(sa.func.count()).select_from(EntryCode)
                         .where(EntryCode.code_hash == issued.code)) == 0  # never in clear
    with pytest.raises(EntryRefused):  # a gate never takes an enrolment code
        p.entry_codes.redeem(issued.code)
    entry = p.entry_codes.issue(ann)
    for code, whose in ((entry.code, ann), (issued.code, bob), ("0000000000", ann), (None, ann)):
        with pytest.raises(EnrolmentCodeRefused, match="sign up first"):
            p.enrolment_codes.check(code, shopper_id=whose, staff_id="kim", client="10.1.1.1")
    assert p.enrolment_codes.check(issued.code, shopper_id=ann, staff_id="kim",
                                   client="10.1.1.1") == issued.code
    # Consent given at the staff point, recorded with the enrolment as the staff member's.
    c.shoppers.enrol_palm(shopper_id=ann, images=[png(0, k) for k in range(4)],
                          consent_text_version=CONSENT, actor="staff:kim",
                          enrolment_code=issued.code)
    with c.db() as db:
        consent = db.scalars(sa.select(BiometricConsent)
                             .where(BiometricConsent.shopper_id == ann)).one()
        assert consent.recorded_by == "staff:kim"
        used = db.get(EntryCode, digest(issued.code))
        assert used is not None and used.used_at is not None
    with pytest.raises(EnrolmentCodeRefused):
        p.enrolment_codes.check(issued.code, shopper_id=ann, staff_id="kim", client="10.1.1.1")
    # Used, or expired by the final write: refused with nothing stored (not even consent).
    late = p.enrolment_codes.issue(bob)
    clock.now += timedelta(minutes=11)
    for code in (issued.code, late.code):
        with pytest.raises(EnrolmentCodeRefused):
            c.shoppers.enrol_palm(shopper_id=bob, images=[png(1, k) for k in range(4)],
                                  consent_text_version=CONSENT, actor="staff:kim",
                                  enrolment_code=code)
    assert _held(c, bob) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
    assert p.consents.history(bob) == []
    # A self-service consent names the shopper.
    p.consents.give(shopper_id=bob, purpose="palm_identification", text_version=CONSENT)
    with c.db() as db:
        assert db.scalar(sa.select(BiometricConsent.recorded_by)
                         .where(BiometricConsent.shopper_id == bob)) == f"shopper:{bob}"


def test_wrong_enrolment_codes_are_throttled_per_staff_and_client(world: World) -> None:
    c, p, clock = world
    ann = _sign_up(p, "ann")
    codes = EnrolmentCodeService(sessions=c.db, clock=clock, per_staff=3, per_client=5)
    good = codes.issue(ann)
    for _ in range(3):
        with pytest.raises(EnrolmentCodeRefused):
            codes.check("WRONGWRONG", shopper_id=ann, staff_id="kim", client="10.1.1.1")
    with pytest.raises(TooManyAttempts) as limited:  # even the right code, once over
        codes.check(good.code, shopper_id=ann, staff_id="kim", client="10.1.1.2")
    assert limited.value.retry_after_s >= 1
    assert codes.check(good.code, shopper_id=ann, staff_id="lee", client="10.1.1.3")
    for _ in range(2):
        with pytest.raises(EnrolmentCodeRefused):
            codes.check("WRONGWRONG", shopper_id=ann, staff_id="max", client="10.1.1.1")
    with pytest.raises(TooManyAttempts):  # 5 failures from this address in all
        codes.check(good.code, shopper_id=ann, staff_id="ned", client="10.1.1.1")


def test_withdrawal_before_the_final_write_refuses_the_enrolment(world: World) -> None:
    c, p, _ = world
    ann = _sign_up(p, "ann")
    _hook_encrypt(c, lambda: p.consents.withdraw(shopper_id=ann))
    with pytest.raises(ConsentRequired, match="withdrawn while the enrolment ran"):
        c.shoppers.enrol_palm(shopper_id=ann, images=[png(2, k) for k in range(4)])
    assert _held(c, ann) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
    assert _identified(c, 2) is None


def test_palms_deleted_before_the_final_write_refuse_the_enrolment(world: World) -> None:
    c, p, _ = world
    ann = _sign_up(p, "ann")
    c.shoppers.enrol_palm(shopper_id=ann, images=[png(3, k) for k in range(4)])
    _hook_encrypt(c, lambda: p.deletion.delete_all_palms(shopper_id=ann))
    with pytest.raises(Conflict, match="deleted while the enrolment ran"):
        c.shoppers.enrol_palm(shopper_id=ann, images=[png(4, k) for k in range(4)])
    assert _held(c, ann) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
    assert _identified(c, 3) is None and _identified(c, 4) is None


def test_account_deleted_during_enrolment_answers_not_found(world: World) -> None:
    c, p, _ = world
    ann = _sign_up(p, "ann")
    _hook_encrypt(c, lambda: p.deletion.delete_account(shopper_id=ann))
    with pytest.raises(NotFound):
        c.shoppers.enrol_palm(shopper_id=ann, images=[png(5, k) for k in range(4)])
    assert _held(c, ann) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
    with c.db() as db:
        assert db.get(Shopper, ann) is None
    assert _identified(c, 5) is None


@pytest.mark.parametrize("delete", ["withdraw", "delete_all", "delete_account"])
def test_deletion_waiting_on_the_final_write_deletes_what_it_wrote(
        world: World, monkeypatch: pytest.MonkeyPatch, delete: str) -> None:
    """The enrolment commits first (it holds the shopper's row); the deletion, started in
    another thread meanwhile, waits for it and then removes it: database and index agree."""
    c, p, _ = world
    ann = _sign_up(p, "ann")
    writing, errors = threading.Event(), []
    original = enrolment_guard.write_templates

    def slow_write(db: Any, records: Any) -> None:
        writing.set()
        time.sleep(0.3)  # the deletion thread is now waiting for the shopper's row
        original(db, records)

    monkeypatch.setattr(enrolment_guard, "write_templates", slow_write)
    actions = {"withdraw": lambda: p.consents.withdraw(shopper_id=ann),
               "delete_all": lambda: p.deletion.delete_all_palms(shopper_id=ann),
               "delete_account": lambda: p.deletion.delete_account(shopper_id=ann)}

    def deleter() -> None:
        writing.wait(60)
        try:
            actions[delete]()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=deleter)
    thread.start()
    c.shoppers.enrol_palm(shopper_id=ann, images=[png(6, k) for k in range(4)])
    thread.join(60)
    assert errors == []
    assert _held(c, ann) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
    assert _identified(c, 6) is None


def test_concurrent_enrolment_and_withdrawal_end_consistent(world: World) -> None:
    """Both started together (three trials): whichever commits first, a palm is stored
    only with an open consent, the index agrees with the database, and neither fails
    with anything but a clean refusal."""
    c, p, _ = world
    for trial in range(3):
        sid = _sign_up(p, f"t{trial}")
        start, outcome = threading.Barrier(2), dict[str, str]()

        def enrol(sid: str = sid, trial: int = trial, start: threading.Barrier = start,
                  outcome: dict[str, str] = outcome) -> None:
            start.wait()
            try:
                c.shoppers.enrol_palm(shopper_id=sid, images=[png(10 + trial, k)
                                                              for k in range(4)])
                outcome["enrol"] = "enrolled"
            except (ConsentRequired, Conflict) as exc:
                outcome["enrol"] = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - must not happen
                outcome["enrol"] = repr(exc)

        def withdraw(sid: str = sid, trial: int = trial,
                     start: threading.Barrier = start) -> None:
            start.wait()
            time.sleep(0.05 * trial)
            p.consents.withdraw(shopper_id=sid)

        threads = [threading.Thread(target=enrol), threading.Thread(target=withdraw)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert outcome["enrol"] in ("enrolled", "ConsentRequired", "Conflict"), outcome
        assert _held(c, sid) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
        assert _identified(c, 10 + trial) is None


def test_deleting_one_palm_leaves_no_snapshot_copy_and_the_last_shreds_the_key(
        world: World) -> None:
    c, p, clock = world
    ann, bob = _sign_up(p, "ann"), _sign_up(p, "bob")
    c.shoppers.enrol_palm(shopper_id=ann, images=[png(20, k) for k in range(4)])
    clock.now += timedelta(minutes=1)  # palms are listed by enrolment time
    c.shoppers.enrol_palm(shopper_id=ann, images=[png(21, k) for k in range(4)])
    c.shoppers.enrol_palm(shopper_id=bob, images=[png(22, k) for k in range(4)])
    snapshot = palm_index_snapshot_path(c.settings)
    with c.db() as db:  # "a backup": the encrypted rows as they are now
        backup = [(r.shopper_id, r.ciphertext) for r in db.scalars(
            sa.select(PalmTemplate).where(PalmTemplate.shopper_id == ann))]
    first, second = p.portal.palms(ann)
    c.identity.save_snapshot()
    assert snapshot.exists()
    p.deletion.delete_palm(shopper_id=ann, palm_id=first.id)
    assert not snapshot.exists()  # it held the deleted palm's codes
    assert _held(c, ann)["subject_keys"] == 1  # the other palm still needs the key
    assert _identified(c, 20) is None and _identified(c, 21) == ann
    c.identity.load()  # a restart: rebuilt from the database, the palm is not back
    assert _identified(c, 20) is None and snapshot.exists()
    p.deletion.delete_palm(shopper_id=ann, palm_id=second.id)
    assert not snapshot.exists()
    assert _held(c, ann) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
    cipher: Any = c.identity._cipher  # noqa: SLF001
    for shopper_id, blob in backup:
        with pytest.raises(TemplateDecryptionError):
            cipher.decrypt(shopper_id, blob)
    assert _identified(c, 22) == bob


def test_last_palm_deletion_shreds_the_key_and_deletes_a_stored_export_archive(
        world: World) -> None:
    """Deleting the last palm shreds the data key as deleting all palms does and deletes
    the shopper's stored export archive (it lists the palm): its download answers Gone
    (410), not its contents."""
    c, p, _clock = world
    ann = _sign_up(p, "ann")
    c.shoppers.enrol_palm(shopper_id=ann, images=[png(23, k) for k in range(4)])
    job = p.exports.request(ann)
    assert p.exports.download(ann, job.id)[:2] == b"PK"
    (palm,) = p.portal.palms(ann)
    done = p.deletion.delete_palm(shopper_id=ann, palm_id=palm.id)
    assert done.deleted["exports"] == 1
    assert _held(c, ann) == {"palm_templates": 0, "palm_enrolments": 0, "subject_keys": 0}
    assert _identified(c, 23) is None
    with pytest.raises(Gone, match="palm data it held was deleted"):
        p.exports.download(ann, job.id)
