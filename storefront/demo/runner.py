"""Run one store day through the service layer (the same one the HTTP API uses).

Shoppers register and enrol their palms; then each walks up to the entry gate,
shops with a smart cart whose events cross a lossy network (duplicates,
reordering), and walks out; the exit prices the cart and charges the card.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cart.errors import DuplicateDeviceEvent
from hardware.messages import ItemEventMessage
from hardware.simulators import LossyNetwork, SmartCartSimulator
from identity.errors import IdentityError
from storefront.baskets import Basket
from storefront.bootstrap import Container
from storefront.demo.clock import ENTRY_SPACING, DemoClock
from storefront.demo.palms import PalmPerson
from storefront.demo.report import DayReport
from storefront.errors import StorefrontError
from storefront.gates import EntryDecision
from storefront.privacy.consent import CURRENT_TEXT_VERSION

if TYPE_CHECKING:
    from storefront.demo.broker import BrokerDevices


@dataclass(frozen=True)
class DayPlan:
    """Who shops, what they buy, and how noisy the store is (rates are shares 0..1)."""

    people: Sequence[PalmPerson]
    baskets: Sequence[Basket]
    seed: int
    clock: DemoClock
    day_start: datetime
    duplicate_rate: float = 0.1
    reorder_rate: float = 0.1
    put_back_rate: float = 0.3


Progress = Callable[[str], None]


def failure_reason(reason: str) -> str:
    """A refusal's reason as a report key: its first clause (before ``;``), so refusals
    that differ only in per-capture details count together."""
    return reason.split(";")[0].strip() or "unknown"


def enrol_all(c: Container, plan: DayPlan, report: DayReport, step: Progress) -> list[str | None]:
    """Register every shopper and enrol their palm; returns shopper ids (None if refused).

    Each refusal is counted in ``report.enrolment_failures`` and, by reason, in
    ``report.enrolment_failure_reasons``.
    """
    ids: list[str | None] = []
    for number, person in enumerate(plan.people):
        shopper = c.shoppers.register(display_name=f"Shopper {number + 1}",
                                      payment_token=f"tok_demo_{number:05d}")
        try:
            # The demo shopper enrols themself (kiosk-style): consent given by them.
            c.shoppers.enrol_palm(shopper_id=shopper.id, images=[s() for s in person.enrol],
                                  consent_text_version=CURRENT_TEXT_VERSION,
                                  actor=f"shopper:{shopper.id}")
            report.enrolled += 1
            ids.append(shopper.id)
        except (IdentityError, StorefrontError) as exc:
            report.enrolment_failures += 1
            reason = failure_reason(exc.reason)
            report.enrolment_failure_reasons[reason] = \
                report.enrolment_failure_reasons.get(reason, 0) + 1
            ids.append(None)
        step("enrol")
    return ids


def _enter(c: Container, person: PalmPerson, shopper_id: str, report: DayReport,
           devices: BrokerDevices | None) -> str | None:
    decision: EntryDecision | None
    try:
        if devices is not None:  # through the broker: the gateway calls enter_by_palm
            decision = devices.enter(person.probe())
        else:
            decision = c.gates.enter_by_palm(image=person.probe())
    except IdentityError:
        decision = None
    if decision is None:
        report.not_identified += 1
        return None
    report.identify_ms.append(decision.identify_ms)
    if not decision.admitted:
        if decision.outcome == "ambiguous":
            report.ambiguous += 1
        else:
            report.not_identified += 1
        return None
    report.entered += 1
    if decision.shopper_id == shopper_id:
        report.identified_correctly += 1
    else:
        report.misidentified += 1
    return decision.session_id


def _shop(c: Container, session_id: str, messages: list[ItemEventMessage],
          report: DayReport) -> None:
    for message in messages:
        report.events_sent += 1
        try:
            c.ingest.record(session_id=session_id, kind=message.kind,
                            product_code=message.product_code, quantity=message.quantity,
                            device_id=message.device_id, device_seq=message.device_seq,
                            sensor_time=message.device_time, confidence=message.confidence)
            report.events_ingested += 1
        except DuplicateDeviceEvent:
            report.duplicate_events_ignored += 1


def _exit(c: Container, session_id: str, basket: Basket, report: DayReport) -> None:
    started = time.perf_counter()
    result = c.checkout.exit(session_id)
    report.exit_ms.append((time.perf_counter() - started) * 1000.0)
    if result.status == "paid":
        report.sessions_paid += 1
    else:
        report.sessions_to_staffed_checkout += 1
        reason = (result.reason or "unknown").split(":")[0]
        report.staffed_reasons[reason] = report.staffed_reasons.get(reason, 0) + 1
    matches = result.total_minor == basket.expected_total_minor
    if result.receipt_id is not None:
        report.receipts += 1
        report.receipts_matching_expected += int(matches)
    elif result.total_minor is not None:  # priced, then sent to the staffed checkout
        report.staffed_carts_priced += 1
        report.staffed_carts_matching_expected += int(matches)


def _shop_via_broker(devices: BrokerDevices, device_id: str,
                     messages: list[ItemEventMessage], report: DayReport) -> None:
    outcomes = devices.shop(device_id, messages)
    report.events_sent += len(messages)
    report.events_ingested += outcomes["applied"]
    report.duplicate_events_ignored += outcomes["duplicate"]


def run_day(c: Container, plan: DayPlan, step: Progress,
            devices: BrokerDevices | None = None) -> DayReport:
    """Enrol everyone, then run each shopper's trip; returns the report.

    With ``devices`` the gate and carts talk through an MQTT broker to the gateway;
    otherwise the service layer is called directly. Same plan, same report.
    """
    report = DayReport(shoppers=len(plan.people))
    shopper_ids = enrol_all(c, plan, report, step)
    network = LossyNetwork(seed=plan.seed, duplicate_rate=plan.duplicate_rate,
                           reorder_rate=plan.reorder_rate)
    codes = sorted({code for basket in plan.baskets for code, _ in basket.lines})
    rng = random.Random(plan.seed)
    for number, (person, shopper_id) in enumerate(zip(plan.people, shopper_ids, strict=True)):
        basket = plan.baskets[number]
        entered_at = plan.day_start + number * ENTRY_SPACING
        plan.clock.set(entered_at)
        session_id = _enter(c, person, shopper_id, report, devices) if shopper_id else None
        if session_id is not None:
            cart = SmartCartSimulator(device_id=f"cart-{number:04d}",
                                      seed=rng.randrange(2**31),
                                      clock_start=entered_at + timedelta(seconds=5))
            sent = cart.trip(session_id, basket.lines, put_back_rate=plan.put_back_rate,
                             catalogue_codes=codes)
            delivered = list(network.deliver(sent).messages)
            last = max((m.device_time for m in sent), default=entered_at)
            plan.clock.set(last + timedelta(seconds=1))  # events reach the service late
            if devices is not None:
                _shop_via_broker(devices, cart.device_id, delivered, report)
            else:
                _shop(c, session_id, delivered, report)
            plan.clock.set(last + timedelta(seconds=30))
            _exit(c, session_id, basket, report)
        step("shop")
    return report
