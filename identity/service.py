"""The identity service: enrol, identify and delete palms.

Pipeline per capture: :func:`identity.imageio.decode_image` ->
:func:`identity.roi.extract_roi` -> :func:`identity.features.extract_features`
-> :class:`identity.template.Template`. Templates are stored only encrypted, as clear
templates (:class:`identity.protection.TemplateCipher`, a data key per blob, or
:class:`identity.keyring.Keyring`, a data key per person). The in-memory
:class:`identity.index.PalmIndex` holds only *revocable* codes: every code it keeps
is transformed under the current key of a :class:`identity.revocable.TransformSource`
(:mod:`identity.revocable`), and probes are prepared under the same key. The index is
a cache rebuilt by :meth:`IdentityService.load` from the encrypted snapshot
(:mod:`identity.snapshot`, valid only for the same KEK and transform key) plus the
change log, or from the repository (the system of record). Because the stored
templates are clear-domain, the transform key can be replaced at any time
(``storefront identity rotate-transform``): the index is re-derived from the
repository, and codes of the old key match nothing any more.

A 1:N search has two stages (:meth:`IdentityService._search`): the index ranks subjects by
their CompCode score; the best ``rescore_subjects`` are scored again with the fused
CompCode + OrdinalCode score against their stored templates, and the decision
(:func:`decide`, thresholds of :func:`identity.decision.gallery_threshold`) is made on
those fused scores.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from identity import params
from identity.consistency import same_palm_group
from identity.decision import gallery_threshold
from identity.errors import (
    AcquisitionError,
    EnrolmentError,
    InvalidImageError,
    RetiredTemplateError,
    TemplateDecryptionError,
    TemplateFormatError,
)
from identity.features import extract_features, feature_params
from identity.imageio import decode_image
from identity.index import Candidate, EarlyAccept, IndexRows, PalmIndex
from identity.matcher import PreparedProbe, ReferenceSet
from identity.protection import TemplateProtector
from identity.repository import (
    TemplateChanges,
    TemplateRecord,
    TemplateRepository,
)
from identity.revocable import FixedTransform, RevocableTransform, TransformSource
from identity.roi import extract_roi
from identity.settings import IdentitySettings
from identity.snapshot import (
    SNAPSHOT_INFO,
    SnapshotError,
    SnapshotRows,
    read_snapshot,
    write_snapshot,
)
from identity.template import Template, mask_nbytes

log = logging.getLogger(__name__)

TRANSFORM_INFO = b"storefront/revocable-transform/v1"
_REBUILD_BATCH = 1024

Outcome = Literal["identified", "not_identified", "ambiguous"]


@dataclass(frozen=True)
class CaptureOutcome:
    """What happened to one enrolment capture (``index`` = its position in the request)."""

    index: int
    accepted: bool
    template_id: str | None
    reason: str


@dataclass(frozen=True)
class Enrolment:
    """Result of an enrolment: the stored template ids and every capture's outcome.

    ``compared_subjects``: other enrolled persons whose stored templates the duplicate
    check decrypted and compared (sorted; for the caller's audit of biometric access).
    """

    subject_id: str
    template_ids: tuple[str, ...]
    captures: tuple[CaptureOutcome, ...]
    compared_subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Identification:
    """Result of a 1:N identification; scores in [0, 1], ``elapsed_ms`` in milliseconds.

    ``compared_subjects``: every enrolled person whose stored templates were decrypted and
    compared with the probe in the second stage (sorted; the identified one included), so
    that the caller can audit each biometric access.
    """

    outcome: Outcome
    subject_id: str | None
    score: float
    runner_up_score: float | None
    reason: str
    elapsed_ms: float
    compared_subjects: tuple[str, ...] = ()


def decide(candidates: Sequence[Candidate], settings: IdentitySettings,
           threshold: float | None = None) -> tuple[
    Outcome, str | None, float, float | None, str
]:
    """The decision rule on per-subject candidates sorted best first.

    Identified when best >= threshold and best - runner-up >= margin; ambiguous when
    above threshold but within the margin; otherwise not identified. ``threshold``
    defaults to ``settings.identify_threshold`` (the service passes the threshold of its
    gallery's size, :meth:`IdentityService.decision_threshold`). Returns
    ``(outcome, subject_id, score, runner_up_score, reason)``.
    """
    th = settings.identify_threshold if threshold is None else threshold
    margin = settings.ambiguity_margin
    if not candidates:
        return "not_identified", None, 0.0, None, "No enrolled palm is close to this one."
    best = candidates[0]
    runner = candidates[1].score if len(candidates) > 1 else None
    if best.score < th:
        why = f"No enrolled palm reached the threshold {th:.2f} (best score {best.score:.3f})."
        return "not_identified", None, best.score, runner, why
    lead = best.score - (runner if runner is not None else 0.0)
    if lead < margin:
        why = (
            f"Two enrolled palms match almost equally well (scores {best.score:.3f} and "
            f"{runner:.3f}); the required lead is {margin:.2f}."
        )
        return "ambiguous", None, best.score, runner, why
    why = f"Palm matched with score {best.score:.3f} (threshold {th:.2f}), {lead:.3f} ahead."
    return "identified", best.subject_id, best.score, runner, why


def _add_batch(index: PalmIndex, batch: list[tuple[str, str, Template]]) -> int:
    """Add clear templates to ``index`` in one packed call (then empties ``batch``);
    returns how many were added. Raises TemplateFormatError on a grid mismatch."""
    if not batch:
        return 0
    if any(t.grid != index.grid for _, _, t in batch):
        raise TemplateFormatError(f"a stored template is not of the index grid {index.grid}")
    n, mask_bytes = len(batch), mask_nbytes(index.grid)
    codes = np.stack([np.frombuffer(t.reference_code, np.uint8) for _, _, t in batch])
    masks = np.stack([np.frombuffer(t.mask[:mask_bytes], np.uint8) for _, _, t in batch])
    index.add_packed([b[0] for b in batch], [b[1] for b in batch], codes, masks)
    batch.clear()
    return n


def fused_subject_scores(probe: Template, stored: Sequence[tuple[TemplateRecord, Template]]
                         ) -> list[Candidate]:
    """Second-stage candidates: each subject of ``stored`` with the fused CompCode +
    OrdinalCode score of its best template against ``probe``, best first (ties by id).

    ``stored``: (record, its decrypted clear template) pairs, several per subject allowed.
    Score: :class:`identity.matcher.PreparedProbe` ``fused=True`` (the weighted mean of the
    two codes' distances at one joint alignment, :mod:`identity.matcher`), in [0, 1]; a
    subject's score is its best template's (the max rule of :mod:`identity.decision`).
    Raises TemplateFormatError when a template lacks the ordinal code.
    """
    if not stored:
        return []
    scores = PreparedProbe(probe, fused=True).scores(
        ReferenceSet.from_templates([t for _, t in stored], fused=True))
    best: dict[str, Candidate] = {}
    for (record, _), score in zip(stored, scores.tolist(), strict=True):
        held = best.get(record.subject_id)
        if held is None or score > held.score:
            best[record.subject_id] = Candidate(record.subject_id, record.template_id, score)
    return sorted(best.values(), key=lambda c: (-c.score, c.subject_id))


def template_from_image(image: bytes) -> Template:
    """Decode, extract the ROI and encode one capture: a probe template with its refinement
    variants, scaled ones too when the ROI was located in a whole hand
    (:func:`identity.features.feature_params`); :meth:`Template.to_bytes` keeps the rotations.

    Raises InvalidImageError (undecodable bytes) or AcquisitionError (no usable palm).
    """
    found = extract_roi(decode_image(image))
    return extract_features(found.roi, feature_params(found.passthrough)).to_template()


class IdentityService:
    """Enrol, identify and delete palms (keyword-only methods)."""

    def __init__(
        self, *, repository: TemplateRepository, cipher: TemplateProtector,
        settings: IdentitySettings, snapshot_path: Path | None = None,
        transform: RevocableTransform | TransformSource | None = None,
    ) -> None:
        """``snapshot_path``: where :meth:`save_snapshot` writes the encrypted index
        snapshot that :meth:`load` tries first (None: always rebuild from the repository).

        ``transform``: the revocable transform of index codes, fixed or from a source
        that may change (e.g. :class:`identity.revocable.KeyFileTransform`: the index is
        then re-derived under the new key at the next call). None: a transform keyed
        by HKDF of the current KEK (``TRANSFORM_INFO``), fixed for this service, so the
        index still holds no clear code but its key changes only with the KEK.
        """
        self._repository = repository
        self._cipher = cipher
        self._snapshot_path = snapshot_path
        self._settings = settings
        if transform is None:
            transform = RevocableTransform(cipher.derive_key(TRANSFORM_INFO))
        self._transforms: TransformSource = (
            FixedTransform(transform) if isinstance(transform, RevocableTransform) else transform)
        self._index = self._new_index(self._transforms.current())
        self._lock = threading.RLock()
        self._cursor = 0
        faiss.omp_set_num_threads(settings.faiss_threads)  # process-wide; see params

    def _new_index(self, transform: RevocableTransform) -> PalmIndex:
        # Early accept must use the decision's own threshold and margin (settings may
        # override the params defaults), or its guarantee (identity.index.EarlyAccept) breaks.
        early = EarlyAccept(threshold=self._settings.identify_threshold,
                            margin=self._settings.ambiguity_margin,
                            target_fpir=self._settings.target_fpir)
        return PalmIndex(coarse_from=self._settings.index_coarse_from, transform=transform,
                         early_accept=early)

    @property
    def max_enrolment_captures(self) -> int:
        """Most captures one enrolment may send (``settings.max_enrolment_captures``)."""
        return self._settings.max_enrolment_captures

    @property
    def transform_id(self) -> str:
        """Id of the revocable key the in-memory index codes are made under."""
        return self._index.key_id

    def load(self) -> int:
        """(Re)build the in-memory index under the current transform; returns the
        template count.

        From the snapshot when one is configured and usable (then the change log is
        replayed from its cursor); otherwise - missing, stale, corrupt, another KEK or
        transform key - from the repository (:meth:`rebuild`), which writes a fresh
        snapshot. Raises TemplateDecryptionError / TemplateFormatError on a bad stored
        record.
        """
        transform = self._transforms.current()
        if self._snapshot_path is not None and self._snapshot_path.exists():
            try:
                return self._load_snapshot(self._snapshot_path, transform)
            except SnapshotError as exc:
                log.warning("index snapshot not used, rebuilding from the database: %s",
                            exc.reason)
        return self._rebuild(transform, None)

    def rebuild(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Re-derive every index code from the repository under the current transform,
        ignoring any snapshot, then write a fresh snapshot (when configured); returns
        the template count. ``progress`` is called with the number of templates done so
        far, every 1,024 templates and at the end.

        Raises TemplateDecryptionError / TemplateFormatError on a bad stored record and
        OSError when the snapshot cannot be written.
        """
        return self._rebuild(self._transforms.current(), progress)

    def _rebuild(self, transform: RevocableTransform,
                 progress: Callable[[int], None] | None) -> int:
        cursor = self._repository.head()  # taken first: later changes are replayed
        index = self._new_index(transform)
        batch: list[tuple[str, str, Template]] = []
        done = 0
        retired: set[str] = set()
        for record in self._repository.all():
            template = self._usable(record, retired)
            if template is None:
                continue
            batch.append((record.template_id, record.subject_id, template))
            if len(batch) == _REBUILD_BATCH:
                done += _add_batch(index, batch)
                if progress is not None:
                    progress(done)
        done += _add_batch(index, batch)
        if progress is not None:
            progress(done)
        _warn_retired(retired)
        with self._lock:
            self._index, self._cursor = index, cursor
        self._catch_up()
        if self._snapshot_path is not None:
            self.save_snapshot()
        return len(self._index)

    def _load_snapshot(self, path: Path, transform: RevocableTransform) -> int:
        key = self._cipher.derive_key(SNAPSHOT_INFO)
        rows, cursor = read_snapshot(path, key=key, key_id=self._cipher.key_id,
                                     transform_id=transform.key_id)
        if cursor > self._repository.head():
            raise SnapshotError("snapshot is ahead of the database (stale or another database)")
        index = self._new_index(transform)
        if rows.grid != index.grid or rows.pooled is None:
            raise SnapshotError(f"snapshot grid {rows.grid} or coarse codes do not fit the index")
        try:
            index.add_rows(IndexRows(rows.transform_id, rows.template_ids, rows.subject_ids,
                                     rows.codes, rows.masks, rows.pooled))
        except (ValueError, TemplateFormatError) as exc:
            raise SnapshotError(f"snapshot rows do not fit the index: {exc}") from None
        with self._lock:
            self._index, self._cursor = index, cursor
        self._catch_up()
        return len(self._index)

    def save_snapshot(self) -> int:
        """Write the encrypted index snapshot (atomically); returns its size in bytes.

        The index is first brought up to date, including a change of transform key,
        so a snapshot never holds codes of a revoked key.
        Raises ValueError when no snapshot path is configured, OSError on a write error.
        """
        if self._snapshot_path is None:
            raise ValueError("no snapshot path configured")
        self._catch_up()  # deletions made through other workers never reach the disk
        with self._lock:
            rows = self._index.export_rows()
            cursor = self._cursor
        snap = SnapshotRows(self._index.grid, rows.template_ids, rows.subject_ids, rows.codes,
                            rows.masks, rows.pooled, rows.key_id)
        return write_snapshot(self._snapshot_path, snap, cursor=cursor,
                              key=self._cipher.derive_key(SNAPSHOT_INFO),
                              key_id=self._cipher.key_id)

    def _catch_up(self) -> None:
        """Replay the change log until the cursor stops moving (it is paged)."""
        while True:
            before = self._cursor
            self.refresh()
            if self._cursor == before:
                return

    def refresh(self) -> int:
        """Apply templates added or deleted by other processes since the last look.

        The index is a per-process cache of the repository (the system of record);
        every identification and enrolment first replays the repository's change
        log, so a palm enrolled or deleted through another API worker is seen at
        once. When the transform source has a new key (a rotation), the index is first
        re-derived under it (from the snapshot the rotation wrote, or the repository):
        that call waits for the rebuild. Returns the number of changes applied.
        """
        with self._lock:
            transform = self._transforms.current()
            if transform.key_id != self._index.key_id:
                log.info("revocable key changed (%s -> %s): re-deriving the palm index",
                         self._index.key_id, transform.key_id)
                self.load()
            changes = self._repository.changes_since(self._cursor)
            self._apply(changes)
            self._cursor = max(self._cursor, changes.cursor)
            return len(changes.added) + len(changes.removed_subjects)

    def _apply(self, changes: TemplateChanges) -> None:
        for subject_id in changes.removed_subjects:
            self._index.remove_subject(subject_id)
        retired: set[str] = set()
        for record in changes.added:
            if record.template_id not in self._index:
                template = self._usable(record, retired)
                if template is not None:
                    self._index.add(record.template_id, record.subject_id, template)
        _warn_retired(retired)

    def _decrypt(self, record: TemplateRecord) -> Template:
        return Template.from_bytes(self._cipher.decrypt(record.subject_id, record.ciphertext))

    def _usable(self, record: TemplateRecord, retired: set[str]) -> Template | None:
        """The record's template, or None (its subject added to ``retired``) when it is of
        a retired format version, which the matcher cannot score: that person is not
        identified until they enrol again, and every other palm keeps working. Any other
        bad record raises (TemplateDecryptionError / TemplateFormatError), except one
        deleted since it was read (its subject's key shredded by a concurrent deletion):
        None, the deletion's removal is in the change log after it."""
        try:
            return self._decrypt(record)
        except RetiredTemplateError:
            retired.add(record.subject_id)
            return None
        except TemplateDecryptionError:
            stored = self._repository.of_subjects([record.subject_id])
            if any(r.template_id == record.template_id for r in stored):
                raise
            return None

    def enrol(self, *, subject_id: str, images: Sequence[bytes],
              add_to_own: bool = True, min_captures: int | None = None,
              store: Callable[[Sequence[TemplateRecord]], None] | None = None) -> Enrolment:
        """Enrol the usable captures in ``images`` for ``subject_id``.

        ``store`` writes the encrypted records atomically (default: the repository's
        ``add``); the caller may pass its own to write them in one transaction with
        checks of its own, and refuse by raising (nothing stored, the index unchanged,
        the exception propagates). Afterwards the index is brought up to date from the
        repository's change log, so a deletion committed right after the write is applied
        too, whichever of the two reaches the index first.

        ``add_to_own`` False refuses captures of a palm this subject already enrolled
        (a new palm only: a form sent twice does not enrol the palm twice); True adds
        them as further templates of the subject. ``min_captures``: usable captures
        needed (default ``settings.min_enrolment_captures``). The usable captures must
        show one palm (:func:`identity.consistency.same_palm_group`): captures that do
        not match the others are refused with the reason.

        Raises EnrolmentError (too few/many usable captures, captures of different
        palms, more stored templates for the subject than ``max_templates_per_subject``,
        the palm is already enrolled for another subject, or for this one when
        ``add_to_own`` is False) or InvalidImageError (no capture decoded).
        """
        if not 0 < len(images) <= self._settings.max_enrolment_captures:
            raise EnrolmentError(
                f"between 1 and {self._settings.max_enrolment_captures} captures are needed"
            )
        needed = max(1, min_captures or self._settings.min_enrolment_captures)
        outcomes, templates, errors = self._acquire(images)
        if len(templates) < needed:
            seen = _outcome_pairs(outcomes)
            if errors and len(errors) == len(images):
                raise InvalidImageError(f"no capture could be decoded: {errors[0].reason}",
                                        outcomes=seen)
            raise EnrolmentError(
                f"{len(templates)} usable capture(s), {needed} needed; "
                + "; ".join(o.reason for o in outcomes if not o.accepted), outcomes=seen
            )
        outcomes, templates = self._one_palm(outcomes, templates, needed)
        held = len(self._repository.of_subjects([subject_id]))
        if held + len(templates) > self._settings.max_templates_per_subject:
            raise EnrolmentError(
                f"this account already has {held} palm template(s); {len(templates)} more would"
                f" exceed the limit of {self._settings.max_templates_per_subject} (delete the"
                f" palm and enrol it again)", outcomes=_outcome_pairs(outcomes))
        self.refresh()
        try:
            compared = self._refuse_duplicates(subject_id, [t for _, t in templates],
                                               allow_own=add_to_own)
        except EnrolmentError as exc:
            raise EnrolmentError(exc.reason, outcomes=_outcome_pairs(outcomes),
                                 compared_subjects=exc.compared_subjects,
                                 matched_subjects=exc.matched_subjects,
                                 duplicate=exc.duplicate) from None
        now = datetime.now(UTC)
        records = [
            TemplateRecord(tid, subject_id,
                           self._cipher.encrypt(subject_id, t.rotations_only().to_bytes()), now)
            for tid, t in templates
        ]
        (store or self._repository.add)(records)
        # From the change log, not from ``templates``: a deletion that committed after the
        # write and was applied by another thread's refresh must not be undone here.
        self._catch_up()
        return Enrolment(subject_id, tuple(tid for tid, _ in templates), tuple(outcomes),
                         compared)

    def _one_palm(
        self, outcomes: list[CaptureOutcome], templates: list[tuple[str, Template]], needed: int
    ) -> tuple[list[CaptureOutcome], list[tuple[str, Template]]]:
        """Keep the captures of the palm most of them show; refuse the others (see
        :mod:`identity.consistency`). Raises EnrolmentError without a strict majority
        or with fewer than ``needed`` left."""
        keep = same_palm_group([t for _, t in templates], self._settings.identify_threshold)
        if len(keep) == len(templates):
            return outcomes, templates
        kept_ids = {templates[i][0] for i in keep}
        reason = "different_palm: does not match the other captures of this enrolment"
        outcomes = [o if o.template_id is None or o.template_id in kept_ids
                    else CaptureOutcome(o.index, False, None, reason) for o in outcomes]
        if 2 * len(keep) <= len(templates) or len(keep) < needed:
            raise EnrolmentError(
                f"the captures do not show one palm: the largest group of matching captures "
                f"has {len(keep)} of {len(templates)} usable ({needed} needed); take the "
                f"photos again of one palm only",
                outcomes=_outcome_pairs(outcomes),
            )
        return outcomes, [templates[i] for i in keep]

    def _acquire(
        self, images: Sequence[bytes]
    ) -> tuple[list[CaptureOutcome], list[tuple[str, Template]], list[InvalidImageError]]:
        outcomes: list[CaptureOutcome] = []
        templates: list[tuple[str, Template]] = []
        errors: list[InvalidImageError] = []
        first_of: dict[bytes, int] = {}
        for i, data in enumerate(images):
            digest = hashlib.sha256(data).digest()
            if digest in first_of:  # a sensor never takes the same bytes twice
                outcomes.append(CaptureOutcome(
                    i, False, None, f"duplicate_capture: the same file as capture "
                    f"{first_of[digest]} (each capture must be taken anew)"))
                continue
            first_of[digest] = i
            try:
                template = template_from_image(data)
            except (InvalidImageError, AcquisitionError) as e:
                if isinstance(e, InvalidImageError):
                    errors.append(e)
                outcomes.append(CaptureOutcome(i, False, None, f"{e.code}: {e.reason}"))
                continue
            tid = uuid.uuid4().hex
            templates.append((tid, template))
            outcomes.append(CaptureOutcome(i, True, tid, "accepted"))
        return outcomes, templates, errors

    def _refuse_duplicates(self, subject_id: str, templates: Sequence[Template], *,
                           allow_own: bool) -> tuple[str, ...]:
        """1:N duplicate check: a palm belongs to one subject only.

        Searches the first ``params.DUPLICATE_CHECK_CAPTURES`` captures (see there).
        Returns the other subjects whose stored templates were decrypted and compared
        (sorted). Raises EnrolmentError (``duplicate``, carrying those subjects and the
        ones whose palm matched) when one capture matches another subject's palm, or
        (unless ``allow_own``) a palm this subject already enrolled.
        """
        own, seen = False, set[str]()
        threshold = self.decision_threshold()
        for t in templates[: params.DUPLICATE_CHECK_CAPTURES]:
            candidates, compared = self._search_compared(t)
            seen.update(compared)
            matched = {c.subject_id for c in candidates if c.score >= threshold}
            own = own or subject_id in matched
            if matched - {subject_id}:
                raise EnrolmentError("this palm is already enrolled for another account",
                                     compared_subjects=_others(seen, subject_id),
                                     matched_subjects=_others(matched, subject_id),
                                     duplicate=True)
        if own and not allow_own:
            raise EnrolmentError("this palm is already enrolled on this account (to enrol it "
                                 "again, delete it first)",
                                 compared_subjects=_others(seen, subject_id), duplicate=True)
        return _others(seen, subject_id)

    def _search(self, probe: Template) -> list[Candidate]:
        """Both stages of a 1:N search: the candidates of :meth:`_search_compared`."""
        return self._search_compared(probe)[0]

    def _search_compared(self, probe: Template) -> tuple[list[Candidate], tuple[str, ...]]:
        """Both stages of a 1:N search; candidate subjects with their fused scores, best
        first, and the subjects whose stored templates were decrypted (sorted).

        Stage 1: the index (:meth:`identity.index.PalmIndex.search`) ranks subjects by the
        CompCode score of their best template (the index holds only revocable CompCode
        rows). Stage 2: the ``rescore_subjects`` best of them are scored again with the
        fused CompCode + OrdinalCode score (:class:`identity.matcher.PreparedProbe`
        ``fused=True``) against the subject's stored templates (at most
        ``max_templates_per_subject``, the index's best first), decrypted from the
        repository for this call only; a subject scores its best template (the max rule
        of :mod:`identity.decision`). The decision thresholds are fitted on this fused
        subject score (``params.SUBJECT_FMR_TAIL_*``). A stored template that cannot be
        used (the subject deleted since the index was searched and its data key
        shredded, a retired format version, a damaged record) is logged and left out;
        a subject with no usable template left is dropped. Raises nothing of its own.
        """
        found = self._index.search(probe, self._settings.shortlist_size)
        top = found[: self._settings.rescore_subjects]
        if not top:
            return [], ()
        records, templates = [], []
        for record in self._capped(top):
            try:
                templates.append(self._decrypt(record))
            except (TemplateDecryptionError, TemplateFormatError) as exc:
                # Shredded by a concurrent deletion (the subject is gone), a retired format
                # or a damaged record: that subject is left out of this decision, never a
                # guess and never an error for the shopper at the gate.
                log.warning("template %s of a candidate subject not usable: %s",
                            record.template_id, exc)
                continue
            records.append(record)
        compared = tuple(sorted({r.subject_id for r in records}))
        return fused_subject_scores(probe, list(zip(records, templates, strict=True))), compared

    def _capped(self, top: Sequence[Candidate]) -> list[TemplateRecord]:
        """Stored records of the ``top`` subjects, at most ``max_templates_per_subject`` each:
        the template the index found best first, then the others in repository order."""
        cap = self._settings.max_templates_per_subject
        best = {c.subject_id: c.template_id for c in top}
        by_subject: dict[str, list[TemplateRecord]] = {}
        for record in self._repository.of_subjects(list(best)):
            by_subject.setdefault(record.subject_id, []).append(record)
        out: list[TemplateRecord] = []
        for subject, records in by_subject.items():
            records.sort(key=lambda r: r.template_id != best[subject])  # stable: best first
            out.extend(records[:cap])
        return out

    def decision_threshold(self) -> float:
        """The identification threshold (matcher score) for the current gallery: the
        configured ``identify_threshold``, raised as the number of enrolled subjects grows
        so that the estimated FPIR stays at ``target_fpir``
        (:func:`identity.decision.gallery_threshold`, documented method there)."""
        return gallery_threshold(self._settings.identify_threshold, self._settings.target_fpir,
                                 self._index.subject_count())

    def identify(self, *, image: bytes) -> Identification:
        """1:N identification of one capture against every enrolled palm.

        Raises InvalidImageError or AcquisitionError when the capture is unusable.
        """
        start = time.perf_counter()
        template = template_from_image(image)
        self.refresh()
        candidates, compared = self._search_compared(template)
        outcome, subject, score, runner, reason = decide(candidates, self._settings,
                                                         self.decision_threshold())
        elapsed = (time.perf_counter() - start) * 1000.0
        return Identification(outcome, subject, score, runner, reason, elapsed, compared)

    def delete(self, *, subject_id: str) -> int:
        """Delete every template of ``subject_id``; returns how many stored ones were deleted."""
        deleted = self._repository.delete_subject(subject_id)
        self._cipher.shred(subject_id)  # per-person data key: every copy becomes unreadable
        with self._lock:
            self._index.remove_subject(subject_id)
            self.discard_snapshot()
        return deleted

    def discard_snapshot(self) -> bool:
        """Remove the on-disk index snapshot (after a deletion it may hold the deleted palm's
        codes: never keep them on disk); the next :meth:`load` rebuilds from the repository
        and writes a fresh one. True if there was one; False also when none is configured."""
        if self._snapshot_path is None:
            return False
        with self._lock:
            existed = self._snapshot_path.exists()
            self._snapshot_path.unlink(missing_ok=True)
            return existed


def _others(subjects: set[str], subject_id: str) -> tuple[str, ...]:
    """``subjects`` without ``subject_id``, sorted."""
    return tuple(sorted(subjects - {subject_id}))


def _warn_retired(subjects: set[str]) -> None:
    if subjects:
        log.warning("%d enrolled person(s) have templates of a retired format version and are"
                    " not identified until they enrol again", len(subjects))


def _outcome_pairs(outcomes: Sequence[CaptureOutcome]) -> tuple[tuple[bool, str], ...]:
    """(accepted, reason) of each capture, for the ``outcomes`` of a refusal."""
    return tuple((o.accepted, o.reason) for o in outcomes)
