"""Audit entries for every biometric access of a 1:N search.

An identification (entry gate) or an enrolment's duplicate check decrypts the stored
templates of the few enrolled persons the index ranks best and compares them with the
probe (:meth:`identity.service.IdentityService.identify`, ``compared_subjects``). Each of
those persons gets an audit entry of their own (action ``compare``, subject
``shopper:<id>``), so the access shows in their data export, and the entry names neither
the person identified nor the one enrolling (a shopper acting on their own account is
shown as ``shopper (self-service)``). The decision itself keeps its own entry
(``identify`` or ``enrol``). All entries of one search are appended in one transaction
(:meth:`storefront.security.audit.Audit.record_many`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from identity.service import Identification
from storefront.security.audit import Audit, NewEntry


def compare_entries(*, actor: str, compared: Iterable[str], skip: str | None, purpose: str,
                    store_id: str | None, matched: Collection[str] = ()) -> list[NewEntry]:
    """One ``compare`` entry per person in ``compared`` except ``skip`` (whose own entry
    records the decision); ``purpose`` is ``identification`` or ``duplicate_check``.
    ``outcome``: ``not this person``, or for a person in ``matched`` (their palm matched
    the one being enrolled, which was refused for it) ``matched: enrolment refused``."""
    return [NewEntry(actor=_neutral(actor), action="compare", subject=f"shopper:{s}",
                     details={"purpose": purpose, "store_id": store_id,
                              "outcome": "matched: enrolment refused" if s in matched
                              else "not this person"})
            for s in compared if s != skip]


def _neutral(actor: str) -> str:
    """The actor as shown to a compared person: a device or staff member as it is, a
    shopper (enrolling their own palm) never by id, which would tell one shopper about
    another."""
    return "shopper (self-service)" if actor.startswith("shopper:") else actor


def audit_identification(audit: Audit, *, actor: str, result: Identification,
                         store_id: str) -> None:
    """Record an identification at a gate: its ``identify`` entry (subject the best
    person found, or ``unidentified``) and a ``compare`` entry for every other person
    whose templates were compared. Raises what :meth:`Audit.record_many` raises."""
    decision = NewEntry(
        actor=actor, action="identify",
        subject=f"shopper:{result.subject_id}" if result.subject_id else "unidentified",
        details={"outcome": result.outcome, "score": round(float(result.score), 4),
                 "store_id": store_id, "compared": len(result.compared_subjects)})
    audit.record_many([decision, *compare_entries(
        actor=actor, compared=result.compared_subjects, skip=result.subject_id,
        purpose="identification", store_id=store_id)])


def audit_enrolment(audit: Audit, *, actor: str, shopper_id: str, compared: Iterable[str],
                    store_id: str | None, details: dict[str, Any],
                    matched: Collection[str] = ()) -> None:
    """Record an enrolment (accepted or refused, ``details`` says which) of ``shopper_id``
    and a ``compare`` entry for every other person its duplicate check compared
    (``matched``: those whose palm matched, so the enrolment was refused)."""
    entries = [NewEntry(actor=actor, action="enrol", subject=f"shopper:{shopper_id}",
                        details={**details, "store_id": store_id})]
    entries += compare_entries(actor=actor, compared=compared, skip=shopper_id,
                               purpose="duplicate_check", store_id=store_id, matched=matched)
    audit.record_many(entries)
