"""1:N palm search: a FAISS binary shortlist followed by exact shift-tolerant re-scoring.

The FAISS index (``IndexBinaryIDMap2`` over ``IndexBinaryFlat``, Hamming distance
on the unshifted, unmasked code bits of variant 0) only proposes candidates; every score that
leaves this module comes from :mod:`identity.matcher`. FAISS integer ids are an
internal detail: callers only ever see their own template and subject ids.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import faiss
import numpy as np
import numpy.typing as npt

from identity import params
from identity.errors import DuplicateTemplateError, TemplateFormatError
from identity.matcher import PreparedProbe, ReferenceSet, translate
from identity.template import Template


@dataclass(frozen=True)
class Candidate:
    """One subject proposed by a search: its best-scoring template and that score in [0, 1]."""

    subject_id: str
    template_id: str
    score: float


@dataclass(frozen=True)
class _Entry:
    template_id: str
    subject_id: str
    refs: ReferenceSet = field(repr=False)  # one packed row


class PalmIndex:
    """Thread-safe in-memory 1:N index of palm templates, keyed by caller-chosen string ids.

    Mutations hold an ``RLock``; a search holds it only while querying FAISS and
    copying the shortlisted rows, so exact re-scoring of concurrent searches runs in
    parallel (numpy releases the GIL).
    """

    def __init__(
        self, grid: tuple[int, int] = (params.FEATURE_GRID_SIZE, params.FEATURE_GRID_SIZE)
    ) -> None:
        """Create an empty index for templates of ``grid`` = (H, W) cells."""
        self.grid = grid
        bits = 3 * grid[0] * grid[1]
        if bits % 8:
            raise ValueError(f"FAISS needs a code length multiple of 8 bits, grid gives {bits}")
        self._index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))
        self._lock = threading.RLock()
        self._next_id = 0
        self._ids: dict[str, int] = {}
        self._entries: dict[int, _Entry] = {}
        self._subjects: dict[str, set[int]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, template_id: object) -> bool:
        with self._lock:
            return template_id in self._ids

    def subject_ids(self) -> frozenset[str]:
        """The subjects with at least one template in the index."""
        with self._lock:
            return frozenset(self._subjects)

    def add(self, template_id: str, subject_id: str, template: Template) -> None:
        """Add one template.

        Raises DuplicateTemplateError if ``template_id`` is present and
        TemplateFormatError if ``template.grid`` differs from the index grid.
        """
        if template.grid != self.grid:
            raise TemplateFormatError(f"template grid {template.grid} != index grid {self.grid}")
        refs = ReferenceSet.from_templates([template])
        code = np.frombuffer(template.reference_code, dtype=np.uint8).reshape(1, -1)
        with self._lock:
            if template_id in self._ids:
                raise DuplicateTemplateError(f"template id {template_id!r} is already indexed")
            fid = self._next_id
            self._index.add_with_ids(code, np.array([fid], dtype=np.int64))
            self._next_id += 1
            self._ids[template_id] = fid
            self._entries[fid] = _Entry(template_id, subject_id, refs)
            self._subjects.setdefault(subject_id, set()).add(fid)

    def remove_subject(self, subject_id: str) -> int:
        """Remove every template of ``subject_id``; returns how many were removed."""
        with self._lock:
            fids = self._subjects.pop(subject_id, set())
            if not fids:
                return 0
            # faiss's Python layer accepts an int64 array here; its stubs only know IDSelector.
            self._index.remove_ids(np.fromiter(sorted(fids), dtype=np.int64))  # type: ignore[arg-type]
            for fid in fids:
                del self._ids[self._entries.pop(fid).template_id]
            return len(fids)

    def search(self, probe: Template, shortlist: int) -> list[Candidate]:
        """Subjects whose templates are near ``probe``, best first (one entry per subject).

        The ``shortlist`` nearest templates by plain Hamming distance (FAISS) are
        re-scored with the shift-tolerant matcher; each subject gets its best score.
        Returns an empty list for an empty index. Raises ValueError if
        ``shortlist < 1`` and TemplateFormatError on a grid mismatch.
        """
        if shortlist < 1:
            raise ValueError("shortlist must be >= 1")
        if probe.grid != self.grid:
            raise TemplateFormatError(f"probe grid {probe.grid} != index grid {self.grid}")
        prepared = PreparedProbe(probe)
        entries = self._shortlist(probe, shortlist)
        if not entries:
            return []
        refs = ReferenceSet(
            self.grid,
            np.concatenate([e.refs.codes for e in entries]),
            np.concatenate([e.refs.masks for e in entries]),
        )
        return _best_per_subject(entries, prepared.scores(refs))

    def _shortlist(self, probe: Template, shortlist: int) -> list[_Entry]:
        """Union of the ``shortlist`` nearest templates to a few translations of ``probe``."""
        shifts = params.SHORTLIST_QUERY_SHIFTS
        moved = [translate(probe, dy, dx) for dy in shifts for dx in shifts]
        query = np.stack([np.frombuffer(t.reference_code, np.uint8) for t in moved])
        with self._lock:
            k = min(shortlist, self._index.ntotal)
            if k == 0:
                return []
            _, labels = self._index.search(query, k)
            # -1 pads results when fewer than k are found; never let it through.
            fids = dict.fromkeys(int(f) for f in labels.ravel() if f >= 0)
            return [self._entries[f] for f in fids if f in self._entries]


def _best_per_subject(entries: list[_Entry], scores: npt.NDArray[np.float64]) -> list[Candidate]:
    best: dict[str, Candidate] = {}
    for entry, score in zip(entries, scores.tolist(), strict=True):
        current = best.get(entry.subject_id)
        if current is None or score > current.score:
            best[entry.subject_id] = Candidate(entry.subject_id, entry.template_id, float(score))
    return sorted(best.values(), key=lambda c: (-c.score, c.subject_id))
