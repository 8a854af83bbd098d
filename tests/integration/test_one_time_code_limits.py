"""Entry and enrolment codes: at most 5 live codes of a purpose per shopper (429 with the
seconds until the oldest expires), and used or expired rows deleted by the retention
sweep after a day (a used row would tie a detached trip to the shopper). SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from storefront.accounts import TooManyAttempts
from storefront.bootstrap import Container, bootstrap
from storefront.db.models import EntryCode
from storefront.payments import SimulatedProcessor
from storefront.privacy.wiring import Privacy, build_privacy
from storefront.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 8, 30, 15, 500_000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


World = tuple[Container, Privacy, Clock]


@pytest.fixture
def world(database: str | None, tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    c = bootstrap(Settings(data_dir=tmp_path / "store", database_url=database), clock=clock,
                  processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    yield c, build_privacy(c, clock=clock), clock
    c.close()


def _codes(c: Container, sid: str) -> list[EntryCode]:
    with c.db() as db:
        return list(db.scalars(sa.select(EntryCode).where(EntryCode.shopper_id == sid)).all())


def test_at_most_five_live_codes_per_purpose(world: World) -> None:
    c, p, clock = world
    sid = c.shoppers.register(display_name="Ann", payment_token="tok_a").id
    other = c.shoppers.register(display_name="Bob", payment_token="tok_b").id
    first = [p.entry_codes.issue(sid) for _ in range(5)]
    clock.now += timedelta(seconds=30)
    with pytest.raises(TooManyAttempts, match="at most 5 unused entry codes") as refused:
        p.entry_codes.issue(sid)
    assert refused.value.retry_after_s == 90  # the oldest expires 2 minutes after issue
    assert len(_codes(c, sid)) == 5  # nothing stored for the refusal
    p.entry_codes.issue(other)  # another shopper is not held back
    for _ in range(5):  # another purpose has its own limit
        p.enrolment_codes.issue(sid)
    with pytest.raises(TooManyAttempts, match="enrolment codes"):
        p.enrolment_codes.issue(sid)
    p.entry_codes.redeem(first[0].code)  # a used code frees a slot
    p.entry_codes.issue(sid)
    clock.now += timedelta(minutes=2)  # every earlier entry code expired
    for _ in range(4):
        p.entry_codes.issue(sid)


def test_sweep_deletes_spent_codes_after_a_day(world: World) -> None:
    c, p, clock = world
    sid = c.shoppers.register(display_name="Cy", payment_token="tok_c").id
    used = p.entry_codes.issue(sid)
    p.enrolment_codes.issue(sid)  # never used: expires 10 minutes later
    p.entry_codes.redeem(used.code)
    clock.now += timedelta(hours=23)
    fresh_used, live = p.entry_codes.issue(sid), p.enrolment_codes.issue(sid)
    p.entry_codes.redeem(fresh_used.code)
    clock.now += timedelta(hours=1, minutes=11)  # the first two are over a day spent
    assert p.retention.sweep().codes_deleted == 2  # the first used and the first expired
    left = _codes(c, sid)
    assert len(left) == 2 and {r.purpose for r in left} == {"entry", "enrolment"}
    assert p.retention.sweep().codes_deleted == 0  # idempotent
    clock.now += timedelta(days=1)
    assert p.retention.sweep().codes_deleted == 2 and _codes(c, sid) == []
    assert live.expires_at < clock.now


def test_sweep_deletes_failed_attempts_past_their_window(world: World) -> None:
    """Failed-attempt rows (hashes of staff ids and addresses) go with the retention sweep
    once their window has passed, even when no later failure comes to prune them."""
    from storefront.db.models import FailedAttempt
    from storefront.privacy.enrolment_codes import EnrolmentCodeRefused

    c, p, clock = world
    sid = c.shoppers.register(display_name="Di", payment_token="tok_d").id
    for _ in range(3):  # 3 wrong codes: one row per key (staff, client) each
        with pytest.raises(EnrolmentCodeRefused):
            p.enrolment_codes.check("nope", shopper_id=sid, staff_id="ana", client="10.0.0.9")

    def rows() -> int:
        with c.db() as db:
            return int(db.scalar(sa.select(sa.func.count()).select_from(FailedAttempt)) or 0)

    assert rows() == 6
    clock.now += timedelta(minutes=14)
    assert p.retention.sweep().failed_attempts_deleted == 0 and rows() == 6  # still counting
    clock.now += timedelta(minutes=2)  # past the 15-minute window
    assert p.retention.sweep().failed_attempts_deleted == 6 and rows() == 0
    assert p.retention.sweep().failed_attempts_deleted == 0  # idempotent
