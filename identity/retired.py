"""Stored templates of a retired format version (1, 2): find who is affected, purge them.

A retired template (:class:`identity.errors.RetiredTemplateError`, see
:mod:`identity.template`) cannot be scored by the matcher: the index rebuild and the
second stage skip it, so its person is not identified until they enrol again. Biometric
data that can no longer be used must not be kept (data minimisation), hence
:func:`purge_retired`.

Where the format version is: byte 1 of both blob versions (:mod:`identity.protection`
blob version 1, :mod:`identity.keyring` blob version 2), in clear, but only
*authenticated* (it is part of the AES-GCM associated data) by a successful decryption,
and only decryption tells a shredded or damaged record apart. So :func:`scan_retired`
decrypts every record with the service's own protector (the same
:class:`identity.protection.TemplateProtector` :class:`identity.service.IdentityService`
uses), classifies the clear bytes exactly as the service does
(:meth:`identity.template.Template.from_bytes`) and drops them at once: nothing clear is
kept or returned. A record that cannot be decrypted (shredded data key, missing KEK,
tampering) or that decrypts to bytes no version accepts is counted as *unreadable*,
never purged, and never stops the scan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from identity.errors import IdentityError, RetiredTemplateError
from identity.protection import TemplateProtector
from identity.repository import TemplateRecord, TemplateRepository
from identity.template import Template

Kind = Literal["usable", "retired", "unreadable"]


@dataclass(frozen=True)
class SubjectTemplates:
    """One person's stored templates by what the matcher can do with them.

    ``retired``: format version -> number of retired templates; ``usable``: templates
    the matcher scores; ``unreadable``: templates that could not be decrypted or parsed;
    ``retired_ids``: the ids of the retired ones (what a purge deletes).
    """

    subject_id: str
    retired: Mapping[int, int]
    usable: int
    unreadable: int
    retired_ids: tuple[str, ...] = field(repr=False)

    @property
    def retired_total(self) -> int:
        """Number of retired templates, all versions."""
        return sum(self.retired.values())


@dataclass(frozen=True)
class RetiredReport:
    """Outcome of :func:`scan_retired`.

    ``subjects``: every person with at least one retired or unreadable template, sorted
    by subject id (persons with usable templates only are just counted);
    ``persons_scanned`` / ``templates_scanned`` / ``usable``: totals over the repository.
    """

    subjects: tuple[SubjectTemplates, ...]
    persons_scanned: int
    templates_scanned: int
    usable: int

    @property
    def affected(self) -> tuple[SubjectTemplates, ...]:
        """The persons with at least one retired template."""
        return tuple(s for s in self.subjects if s.retired_total)

    @property
    def retired_by_version(self) -> dict[int, int]:
        """Format version -> retired templates over every person."""
        total: Counter[int] = Counter()
        for s in self.subjects:
            total.update(s.retired)
        return dict(sorted(total.items()))

    @property
    def unreadable(self) -> int:
        """Templates that could not be decrypted or parsed, over every person."""
        return sum(s.unreadable for s in self.subjects)


@dataclass(frozen=True)
class PurgedSubject:
    """What a purge did to one person: ``deleted`` retired templates (``by_version``: the
    retired templates the scan listed, by format version; ``deleted`` is smaller only if a
    concurrent deletion took some first), ``kept`` templates still stored (usable or
    unreadable), and whether the person had nothing left and was removed with their data
    key (``removed``)."""

    subject_id: str
    deleted: int
    by_version: Mapping[int, int]
    kept: int
    removed: bool


@dataclass(frozen=True)
class PurgeResult:
    """Outcome of :func:`purge_retired`: ``deleted`` templates in all, each purged person,
    and the persons ``skipped`` because they also have unreadable templates."""

    deleted: int
    subjects: tuple[PurgedSubject, ...]
    skipped: tuple[str, ...] = ()


def classify(record: TemplateRecord, cipher: TemplateProtector) -> tuple[Kind, int]:
    """What ``record`` is to the matcher: ``("usable", 3)``, ``("retired", version)`` or
    ``("unreadable", 0)`` (cannot be decrypted, or not a template of any known version).

    Decrypts with ``cipher`` only to read the authenticated format version; the clear
    bytes are dropped before returning. Raises nothing for a bad record (any
    :class:`identity.errors.IdentityError` of the protector makes it unreadable); other
    errors (e.g. the key store's database is down) propagate.
    """
    try:
        plain = cipher.decrypt(record.subject_id, record.ciphertext)
        version = plain[4] if len(plain) > 4 else 0  # byte 4: format version (template.py)
        Template.from_bytes(plain)
    except RetiredTemplateError:
        return "retired", version
    except IdentityError:  # TemplateDecryptionError, TemplateFormatError, KeyFileError
        return "unreadable", 0
    return "usable", version


def scan_retired(repository: TemplateRepository, cipher: TemplateProtector) -> RetiredReport:
    """Classify every stored record (:func:`classify`); returns the per-person report.

    Reads the repository once and decrypts each record once (one data-key look-up per
    record with :class:`identity.keyring.Keyring`). Raises only what the repository
    raises while reading.
    """
    usable: Counter[str] = Counter()
    unreadable: Counter[str] = Counter()
    retired: dict[str, list[tuple[str, int]]] = {}
    scanned = 0
    for record in repository.all():
        scanned += 1
        kind, version = classify(record, cipher)
        if kind == "usable":
            usable[record.subject_id] += 1
        elif kind == "unreadable":
            unreadable[record.subject_id] += 1
        else:
            retired.setdefault(record.subject_id, []).append((record.template_id, version))
    persons = set(usable) | set(unreadable) | set(retired)
    subjects = tuple(_subject(s, retired.get(s, []), usable[s], unreadable[s])
                     for s in sorted(set(retired) | set(unreadable)))
    return RetiredReport(subjects, len(persons), scanned, sum(usable.values()))


def _subject(subject_id: str, retired: list[tuple[str, int]], usable: int,
             unreadable: int) -> SubjectTemplates:
    by_version = Counter(v for _, v in retired)
    return SubjectTemplates(subject_id, dict(sorted(by_version.items())), usable, unreadable,
                            tuple(sorted(t for t, _ in retired)))


def purge_retired(repository: TemplateRepository, cipher: TemplateProtector,
                  report: RetiredReport | None = None, *,
                  on_subject: Callable[[PurgedSubject], None] | None = None) -> PurgeResult:
    """Delete exactly the retired templates of ``report`` (default: a fresh
    :func:`scan_retired`); returns what was deleted. Idempotent: a second run deletes 0.

    Per person, in subject-id order: the retired records are deleted
    (:meth:`TemplateRepository.delete_templates`, which logs the change for every
    process); usable records are kept, and so is the person's data key. A person who also
    has unreadable templates is skipped (listed in ``skipped``, nothing deleted):
    the deletion logs their remaining records as added again, and every process would
    then fail on the unreadable one (the service skips only retired records); such a
    person needs a look first (e.g. delete their palms).
    A person left with no stored record at all (checked again after the deletion, so a
    palm enrolled meanwhile is kept) is removed as :meth:`IdentityService.delete` does:
    :meth:`TemplateRepository.delete_subject` (logged) and their data key shredded
    (``cipher.shred``). A palm enrolled in the instant between that check and the
    removal would be removed with it (the same race as any deletion). ``on_subject`` is
    called after each person (e.g. to write an audit entry). Raises what the repository
    or ``on_subject`` raise; persons done before are purged.
    """
    report = report if report is not None else scan_retired(repository, cipher)
    done = []
    for subject in report.affected:
        if subject.unreadable:
            continue
        purged = _purge_one(repository, cipher, subject)
        done.append(purged)
        if on_subject is not None:
            on_subject(purged)
    skipped = tuple(s.subject_id for s in report.affected if s.unreadable)
    return PurgeResult(sum(p.deleted for p in done), tuple(done), skipped)


def _purge_one(repository: TemplateRepository, cipher: TemplateProtector,
               subject: SubjectTemplates) -> PurgedSubject:
    deleted = repository.delete_templates(subject.retired_ids)
    kept = len(repository.of_subjects([subject.subject_id]))
    removed = kept == 0
    if removed:
        repository.delete_subject(subject.subject_id)
        cipher.shred(subject.subject_id)
    return PurgedSubject(subject.subject_id, deleted, subject.retired, kept, removed)
