"""1:N palm search: a FAISS binary shortlist followed by exact shift-tolerant re-scoring.

Storage is columnar: every template is one row of packed numpy arrays (variant-0
code words, an id into a table of distinct masks), so a gallery of a million palms
costs hundreds of bytes per template, not Python objects. The FAISS index
(``IndexBinaryIDMap`` over ``IndexBinaryFlat``, labels = row numbers) only proposes
candidates; every score that leaves this module comes from :mod:`identity.matcher`.

Coarse stage: while the gallery is small (< ``params.INDEX_COARSE_FROM`` templates)
FAISS holds the full 3072-bit codes; from that size on it holds a *pooled* code
(:func:`pool_codes`, majority of each bit plane over ``params.INDEX_COARSE_POOL``
cells, 768 bits), which is 4x cheaper to scan. Either way the probe is translated
(pooling after translation commutes with the matcher's cell shifts) and the nearest
rows to the translated queries are re-scored exactly. FAISS ids are internal:
callers see only their own string ids.

Staged search with early accept (:meth:`PalmIndex.search_detail`): the queries come
in stages of growing cost (:func:`query_stages`): the unshifted probe; its other
``params.SHORTLIST_QUERY_SHIFTS`` translations; its rotation variants at every
translation. After each stage the search stops when a re-scored template reaches the
early-accept score of :class:`EarlyAccept`, a score no impostor template of a gallery
of this size is expected to come near (bounded probability ``params.EARLY_ACCEPT_RISK``,
from the fitted FMR tail of :mod:`identity.decision`); every other probe runs all
stages and the union of every stage's re-scored rows is the answer.

Revocable codes: the index never holds a clear code. Every index has a
:class:`identity.revocable.RevocableTransform` (a random one for its lifetime when
none is given); callers add *clear* templates or packed rows, and the index keeps

* the full code and mask under the transform (secret cell permutation + XOR), as
  rows for re-scoring and, below the coarse size, in FAISS;
* the pooled code, computed from the clear code at insertion (the only moment it is
  in hand, since pooling does not commute with a cell permutation) and protected by
  the transform's second keyed permutation + XOR of the 768 pooled bits
  (:meth:`~identity.revocable.RevocableTransform.pooled`). FAISS compares pooled
  codes unshifted, by plain Hamming distance (the probe's translations are made in
  the clear, then pooled, then protected), so this bijection preserves every coarse
  distance: the shortlist is the one clear codes would give. Below the coarse size
  the protected pooled codes wait in a column (96 bytes a row) for the switch; from
  it on FAISS holds their only copy.

A probe is prepared with the same transform (:class:`identity.matcher.PreparedProbe`
``transform=``), so every score equals the clear score; probes and codes of two keys
do not match. :meth:`PalmIndex.export_rows` / :meth:`PalmIndex.add_rows` move the
protected rows (with the key id) to and from the snapshot of :mod:`identity.snapshot`.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from identity import params
from identity.decision import gallery_threshold
from identity.errors import DuplicateTemplateError, TemplateFormatError
from identity.matcher import PreparedProbe, ReferenceSet, translate
from identity.revocable import RevocableTransform
from identity.template import BITS_PER_CELL, Template, code_nbytes, mask_nbytes

U8 = npt.NDArray[np.uint8]
Query = tuple[int, int, int]  # (rotation variant, dy cells, dx cells) of the probe


@dataclass(frozen=True)
class Candidate:
    """One subject proposed by a search: its best-scoring template and that score in [0, 1]."""

    subject_id: str
    template_id: str
    score: float


@dataclass(frozen=True)
class EarlyAccept:
    """When a staged search may stop early: the early-accept score for a gallery size.

    Derivation (union bound on the fitted impostor tail of :mod:`identity.decision`,
    ``log10 FMR(t) = slope * t + intercept``, the FPIR approximation of NIST IR 8271
    and Daugman 2004). An index of ``n`` templates holds at most ``n`` impostor
    templates of any probe, so the probability that *any* of them scores at least
    ``u`` is at most ``n * FMR(u)``. :meth:`score` returns ``t = u + margin`` with
    ``n * FMR(u) = risk``, and at least ``threshold``. Unless that bounded event
    happens (probability <= ``risk``), a search that stops on a template scoring
    >= t answers as an exhaustive exact search would under the decision rule of
    :func:`identity.service.decide`: the stopping template is genuine (every impostor
    scores < t - margin), so the exhaustive best subject is the same person, its
    score is >= t >= ``threshold``, and the exhaustive runner-up subject (an impostor)
    scores < t - margin, so both are "identified" with the same subject. What may
    differ: the reported best score (the subject's best template may lie in a later
    stage; it is then lower, still >= t) and the runner-up score (the early search
    sees fewer subjects, so it is lower or missing). This is a statement about the
    index's CompCode scores: the service decides on fused scores of the best subjects the
    index returns (:meth:`identity.service.IdentityService._search`), so there the early
    answer's top subject is the exhaustive one's with the same probability, but a
    runner-up the early search did not return cannot make it "ambiguous" (the bench
    counts such changes: ``early_accept_decision_changed``). Assumed: one person is one
    subject (the service's duplicate-enrolment check), and the log-linear tail holds
    beyond the range it was fitted on (FMR 3e-6 to 1e-2), as for the decision threshold
    at scale. The decision threshold grows with the gallery
    (:func:`identity.decision.gallery_threshold` of ``threshold``, ``target_fpir`` and
    the number of subjects): the early-accept score is never below it either, whatever
    ``target_fpir`` is configured.

    ``risk`` in (0, 1); ``threshold`` and ``margin`` are matcher scores in [0, 1] (the
    decision's lowest identify threshold and ambiguity margin); ``target_fpir`` the
    decision's target FPIR (None: a fixed ``threshold``); ``slope`` < 0 and
    ``intercept`` are the fit. Raises ValueError otherwise.
    """

    risk: float = params.EARLY_ACCEPT_RISK
    threshold: float = params.IDENTIFY_THRESHOLD
    margin: float = params.AMBIGUITY_MARGIN
    slope: float = params.FMR_TAIL_SLOPE
    intercept: float = params.FMR_TAIL_INTERCEPT
    target_fpir: float | None = params.TARGET_FPIR

    def __post_init__(self) -> None:
        if not 0.0 < self.risk < 1.0 or self.slope >= 0.0:
            raise ValueError("early accept needs 0 < risk < 1 and a falling FMR tail")
        if not (0.0 <= self.threshold <= 1.0 and 0.0 <= self.margin <= 1.0):
            raise ValueError("threshold and margin are scores in [0, 1]")
        if self.target_fpir is not None and not 0.0 < self.target_fpir < 1.0:
            raise ValueError("target_fpir must lie in (0, 1)")

    def score(self, templates: int, subjects: int = 0) -> float:
        """The early-accept score (above 1 it never fires) for an index of ``templates``
        templates (counted as 1 when fewer) of ``subjects`` subjects: at least
        ``threshold`` and the decision threshold for that many subjects."""
        impostor = (math.log10(self.risk / max(1, templates)) - self.intercept) / self.slope
        decision = self.threshold
        if self.target_fpir is not None:
            decision = gallery_threshold(self.threshold, self.target_fpir, subjects)
        return max(decision, impostor + self.margin)


DEFAULT_EARLY_ACCEPT = EarlyAccept()  # params' risk, threshold, margin and FMR tail


@dataclass(frozen=True)
class SearchResult:
    """What :meth:`PalmIndex.search_detail` found and how far it went.

    ``candidates``: one per subject, best first. ``stages``: stages run (0 on an
    empty index) of ``stages_planned``; ``early_accepted``: it stopped because a
    template reached ``accept_score`` (None when early accept was off).
    """

    candidates: list[Candidate]
    stages: int
    stages_planned: int
    early_accepted: bool
    accept_score: float | None


def query_stages(variants: int,
                 shifts: Sequence[int] = params.SHORTLIST_QUERY_SHIFTS) -> list[list[Query]]:
    """The probe queries of a staged search, cheapest first: lists of (variant, dy, dx).

    Stage 1: variant 0 unshifted; stage 2: variant 0 at the other (dy, dx) in
    ``shifts`` x ``shifts`` cells; stage 3: variants 1..``variants``-1 (the rotations of
    ``params.FEATURE_ROTATIONS_DEG``) at every (dy, dx). Empty stages are left out.
    Raises ValueError if ``variants < 1``.
    """
    if variants < 1:
        raise ValueError("a probe has at least one variant")
    grid = [(dy, dx) for dy in shifts for dx in shifts]
    stages = [[(0, 0, 0)], [(0, dy, dx) for dy, dx in grid if (dy, dx) != (0, 0)],
              [(v, dy, dx) for v in range(1, variants) for dy, dx in grid]]
    return [stage for stage in stages if stage]


def _query_codes(probe: Template, queries: Sequence[Query]) -> U8:
    """Clear packed codes of the probe ``queries``: (Q, code_nbytes(grid)) uint8."""
    n_code, n_mask = code_nbytes(probe.grid), mask_nbytes(probe.grid)
    parts = {v: Template(probe.grid, probe.code[v * n_code : (v + 1) * n_code],
                         probe.mask[v * n_mask : (v + 1) * n_mask])
             for v in sorted({q[0] for q in queries})}
    return np.stack([np.frombuffer(translate(parts[v], dy, dx).reference_code, np.uint8)
                     for v, dy, dx in queries])


def pool_codes(codes: U8, grid: tuple[int, int], pool: tuple[int, int]) -> U8:
    """Coarse codes: each bit plane's majority over ``pool`` = (py, px) cells.

    ``codes``: (n, code_nbytes(grid)) uint8, packed (3, H, W) bits as in
    :mod:`identity.template`. Returns (n, ceil(3 * H/py * W/px / 8)) uint8; a tie
    (half the cells set) gives 0. H and W must be multiples of py and px (ValueError).
    Block pooling of orientation codes follows the spatial pooling of local
    descriptors (e.g. histogram cells of HOG, Dalal & Triggs 2005).
    """
    (h, w), (py, px) = grid, pool
    if h % py or w % px:
        raise ValueError(f"grid {grid} is not a multiple of the pool {pool}")
    if pool == (2, 2) and w % 8 == 0:
        return _pool_2x2(codes, h, w)
    bits = np.unpackbits(codes, axis=1, count=BITS_PER_CELL * h * w)
    blocks = bits.reshape(len(codes), BITS_PER_CELL, h // py, py, w // px, px)
    major = blocks.sum(axis=(3, 5), dtype=np.uint16) * 2 > py * px
    return np.packbits(major.reshape(len(codes), -1), axis=1)


# The 4 even (MSB-first) bits of a byte, compressed into a nibble.
_EVEN_BITS = np.array([sum(((v >> (7 - 2 * k)) & 1) << (3 - k) for k in range(4))
                       for v in range(256)], dtype=np.uint8)


def _pool_2x2(codes: U8, h: int, w: int) -> U8:
    """:func:`pool_codes` for 2 x 2 pools on packed bytes: at least 3 of the 4 bits set."""
    rows = codes.reshape(len(codes), BITS_PER_CELL, h, w // 8)
    a, b = rows[:, :, 0::2, :], rows[:, :, 1::2, :]
    both, either = a & b, a | b  # per column: set in both rows / in either row
    # pair (even, odd column): both(even) & either(odd) | both(odd) & either(even)
    hit = ((both & (either << 1)) | (either & (both << 1))) & 0xAA
    nib = _EVEN_BITS[hit].reshape(len(codes), BITS_PER_CELL, h // 2, w // 16, 2)
    out = (nib[..., 0] << 4) | nib[..., 1]
    return np.ascontiguousarray(out.reshape(len(codes), -1))


@dataclass(frozen=True)
class IndexRows:
    """Protected rows of a :class:`PalmIndex` under the transform ``key_id``.

    ``codes`` (n, code bytes), ``masks`` (n, mask bytes) and ``pooled`` (n, pooled
    bytes) are uint8: transformed variant-0 codes, permuted cell masks and protected
    pooled codes (see module).
    """

    key_id: str
    template_ids: list[str]
    subject_ids: list[str]
    codes: U8
    masks: U8
    pooled: U8


class PalmIndex:
    """Thread-safe in-memory 1:N index of palm templates, keyed by caller-chosen string ids.

    Mutations hold an ``RLock``; a search holds it only while querying FAISS and
    copying the shortlisted rows of one search stage, so exact re-scoring of concurrent
    searches runs in parallel (numpy releases the GIL). ``coarse_from``: gallery size
    (templates) from which the pooled coarse code replaces the full code in FAISS.
    ``transform``: the revocable transform of every stored code (None: a random key for
    this index's lifetime); see the module docstring. ``early_accept``: when a search
    may stop before its last stage (None: never; every search runs all stages); its
    threshold and margin should be those of the decision applied to the results.
    """

    def __init__(
        self,
        grid: tuple[int, int] = (params.FEATURE_GRID_SIZE, params.FEATURE_GRID_SIZE),
        *,
        coarse_from: int = params.INDEX_COARSE_FROM,
        coarse_pool: tuple[int, int] = params.INDEX_COARSE_POOL,
        transform: RevocableTransform | None = None,
        early_accept: EarlyAccept | None = DEFAULT_EARLY_ACCEPT,
    ) -> None:
        """Create an empty index for templates of ``grid`` = (H, W) cells.

        Raises ValueError on a code length that is not whole 64-bit words, a pool that
        does not tile the grid, or a transform of another grid.
        """
        self.grid = grid
        bits = BITS_PER_CELL * grid[0] * grid[1]
        if bits % 64:
            raise ValueError(f"the code length must be a multiple of 64 bits, grid gives {bits}")
        self._transform = transform or RevocableTransform(os.urandom(32), grid)
        if self._transform.grid != grid:
            raise ValueError(f"transform grid {self._transform.grid} != index grid {grid}")
        self._pooled_bits = BITS_PER_CELL * (grid[0] // coarse_pool[0]) * (
            grid[1] // coarse_pool[1])
        pool_codes(np.zeros((1, code_nbytes(grid)), np.uint8), grid, coarse_pool)  # validate
        self._coarse_from, self._pool = coarse_from, coarse_pool
        self._lock = threading.RLock()
        self._rows = _Rows(grid, (self._pooled_bits + 7) // 8)
        self._ids: dict[str, int] = {}
        self._subjects: dict[str, list[int]] = {}
        self._coarse = False
        self._faiss, self._flat = self._new_faiss()
        self._early_accept = early_accept

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def __contains__(self, template_id: object) -> bool:
        with self._lock:
            return template_id in self._ids

    @property
    def coarse(self) -> bool:
        """True when FAISS holds pooled codes (large gallery), False for full codes."""
        return self._coarse

    @property
    def key_id(self) -> str:
        """Id of the revocable transform every stored code is made under."""
        return self._transform.key_id

    def subject_count(self) -> int:
        """How many subjects have at least one template in the index."""
        with self._lock:
            return len(self._subjects)

    def subject_ids(self) -> frozenset[str]:
        """The subjects with at least one template in the index."""
        with self._lock:
            return frozenset(self._subjects)

    def nbytes(self) -> int:
        """Bytes held in numpy/FAISS arrays (codes, masks, coarse codes, ids); no Python ids."""
        with self._lock:
            per_row = self._faiss.code_size + 8  # FAISS code + its int64 label
            return self._rows.nbytes() + per_row * int(self._faiss.ntotal)

    def add(self, template_id: str, subject_id: str, template: Template) -> None:
        """Add one (clear) template; the index keeps only its protected codes.

        Raises DuplicateTemplateError if ``template_id`` is present and
        TemplateFormatError if ``template.grid`` differs from the index grid.
        """
        if template.grid != self.grid:
            raise TemplateFormatError(f"template grid {template.grid} != index grid {self.grid}")
        code = np.frombuffer(template.reference_code, np.uint8).reshape(1, -1)
        mask = np.frombuffer(template.mask[: mask_nbytes(self.grid)], np.uint8).reshape(1, -1)
        self.add_packed([template_id], [subject_id], code, mask)

    def add_packed(
        self, template_ids: Sequence[str], subject_ids: Sequence[str], codes: U8, masks: U8
    ) -> None:
        """Add many templates given as packed *clear* variant-0 rows (all or none).

        ``codes``: (n, code_nbytes(grid)) uint8; ``masks``: (n, mask_nbytes(grid))
        uint8 (layout of :mod:`identity.template`). They are pooled, then transformed;
        the clear arrays are not kept. Raises DuplicateTemplateError on a known or
        repeated id and TemplateFormatError on wrong shapes.
        """
        n = len(template_ids)
        if codes.shape != (n, code_nbytes(self.grid)) or masks.shape != (
            n, mask_nbytes(self.grid)
        ) or len(subject_ids) != n:
            raise TemplateFormatError(f"bad packed shapes {codes.shape}, {masks.shape} for {n}")
        pooled = self._protect_pooled(codes)
        self._insert(template_ids, subject_ids, self._transform.codes(codes),
                     self._transform.masks(masks), pooled)

    def add_rows(self, rows: IndexRows) -> None:
        """Add rows exported by an index of the same transform (all or none).

        Raises ValueError when ``rows.key_id`` is another transform's (its codes would
        never match), TemplateFormatError on wrong shapes, DuplicateTemplateError on
        a known or repeated id.
        """
        if rows.key_id != self.key_id:
            raise ValueError(f"rows made under transform {rows.key_id!r}, index uses "
                             f"{self.key_id!r}")
        n = len(rows.template_ids)
        if rows.codes.shape != (n, code_nbytes(self.grid)) or rows.masks.shape != (
            n, mask_nbytes(self.grid)
        ) or rows.pooled.shape != (n, self._rows.pooled_bytes) or len(rows.subject_ids) != n:
            raise TemplateFormatError(f"bad row shapes {rows.codes.shape}, {rows.masks.shape},"
                                      f" {rows.pooled.shape} for {n}")
        self._insert(rows.template_ids, rows.subject_ids, rows.codes, rows.masks, rows.pooled)

    def _protect_pooled(self, codes: U8) -> U8:
        step = 65536  # bounds the unpacked temporary of pool_codes
        parts = [pool_codes(codes[i : i + step], self.grid, self._pool)
                 for i in range(0, max(1, len(codes)), step)]
        return self._transform.pooled(np.concatenate(parts), self._pooled_bits)

    def _insert(self, template_ids: Sequence[str], subject_ids: Sequence[str], codes: U8,
                masks: U8, pooled: U8) -> None:
        """Store protected rows; FAISS gets full codes, or pooled ones once coarse."""
        n = len(template_ids)
        with self._lock:
            if len(set(template_ids)) != n or any(t in self._ids for t in template_ids):
                raise DuplicateTemplateError("a template id is already indexed")
            rows = self._rows.append(codes, masks, template_ids, subject_ids,
                                     None if self._coarse else pooled)
            for tid, sid, row in zip(template_ids, subject_ids, rows.tolist(), strict=True):
                self._ids[tid] = row
                self._subjects.setdefault(sid, []).append(row)
            if self._coarse:
                self._faiss_add(rows, pooled)
            elif len(self._ids) >= self._coarse_from:
                self._coarse = True
                self._faiss, self._flat = self._new_faiss()
                live = self._live_rows()
                self._faiss_add(live, self._rows.pooled_u8(live))
                self._rows.drop_pooled()  # FAISS now holds the only copy
            else:
                self._faiss_add(rows, codes)

    def _new_faiss(self) -> tuple[faiss.IndexBinaryIDMap, faiss.IndexBinaryFlat]:
        nbytes = self._rows.pooled_bytes if self._coarse else code_nbytes(self.grid)
        flat = faiss.IndexBinaryFlat(8 * nbytes)
        return faiss.IndexBinaryIDMap(flat), flat

    def _live_rows(self) -> npt.NDArray[np.int64]:
        return np.fromiter(self._ids.values(), np.int64, len(self._ids))

    def _faiss_add(self, rows: npt.NDArray[np.int64], codes: U8) -> None:
        self._faiss.add_with_ids(np.ascontiguousarray(codes), rows.astype(np.int64))

    def _faiss_codes(self, rows: npt.NDArray[np.int64]) -> U8:
        """The codes FAISS holds for ``rows`` (live rows), read back from its storage."""
        labels = faiss.vector_to_array(self._faiss.id_map)
        stored = self._flat.reconstruct_n(0, int(self._flat.ntotal))
        position = np.full(len(self._rows), -1, np.int64)
        position[labels] = np.arange(len(labels))
        return np.asarray(stored[position[rows]], dtype=np.uint8)

    def export_rows(self) -> IndexRows:
        """Every live row, protected, with the transform's key id (for a snapshot)."""
        with self._lock:
            rows = self._live_rows()
            owners = self._rows.owners(rows)
            codes, masks = self._rows.codes_u8(rows), self._rows.masks_u8(rows)
            pooled = self._faiss_codes(rows) if self._coarse else self._rows.pooled_u8(rows)
        return IndexRows(self.key_id, [o[0] for o in owners], [o[1] for o in owners],
                         codes, masks, pooled)

    def export(self) -> tuple[list[str], list[str], U8, U8]:
        """Live rows as (template ids, subject ids, codes, masks) uint8: the codes and masks
        are *protected* (transformed under this index's key), not clear, so they are not
        input for :meth:`add_packed`; use :meth:`export_rows` and :meth:`add_rows`."""
        rows = self.export_rows()
        return rows.template_ids, rows.subject_ids, rows.codes, rows.masks

    def remove_subject(self, subject_id: str) -> int:
        """Remove every template of ``subject_id``; returns how many were removed."""
        with self._lock:
            rows = self._subjects.pop(subject_id, [])
            if not rows:
                return 0
            # faiss's Python layer accepts an int64 array here; its stubs only know IDSelector.
            self._faiss.remove_ids(np.array(sorted(rows), dtype=np.int64))  # type: ignore[arg-type]
            for row in rows:
                del self._ids[self._rows.release(row)]
            return len(rows)

    @property
    def early_accept(self) -> EarlyAccept | None:
        """The early-accept rule of this index's searches (None: searches run every stage)."""
        return self._early_accept

    def search(self, probe: Template, shortlist: int, *,
               early_accept: bool = True) -> list[Candidate]:
        """Subjects whose templates are near ``probe`` (clear), best first (one entry per
        subject): the candidates of :meth:`search_detail` (see there, and for errors)."""
        return self.search_detail(probe, shortlist, early_accept=early_accept).candidates

    def search_detail(self, probe: Template, shortlist: int, *,
                      early_accept: bool = True) -> SearchResult:
        """Staged 1:N search of ``probe`` (clear); see :class:`SearchResult`.

        Each stage of :func:`query_stages` translates (and rotates) the probe, finds the
        rows nearest to its queries and re-scores them with the shift- and
        rotation-tolerant matcher, the probe prepared under the index's transform.
        Nearest rows: on full codes (small galleries), the ``shortlist`` rows of least
        FAISS Hamming distance to any of the stage's queries; on pooled codes, FAISS
        keeps the ``shortlist x INDEX_COARSE_DEPTH[0]`` nearest pooled codes of each
        query, and the ``shortlist x INDEX_COARSE_DEPTH[1]`` of their union nearest to
        a query by plain Hamming distance of the full codes (:meth:`_Rows.nearest_full`)
        are re-scored. Rows re-scored in an earlier stage are not scored again.

        Early accept (``early_accept`` and the index has an :class:`EarlyAccept`): after
        a stage that is not the last, the search stops when the best re-scored template
        scores at least ``EarlyAccept.score(len(index))``. By the derivation there, the
        decision (threshold, ambiguity margin) on the early answer equals the decision
        on an exhaustive search's, except with probability <= its ``risk`` (for the
        CompCode scores of this index; see :class:`EarlyAccept` for the service's fused
        second stage); the reported best and runner-up scores may be lower. Without
        early accept, or when no template reaches that score, every stage runs and each
        subject gets its best score over the union of all stages' re-scored rows.

        Returns an empty result for an empty index. Raises ValueError if
        ``shortlist < 1`` and TemplateFormatError on a grid mismatch.
        """
        if shortlist < 1:
            raise ValueError("shortlist must be >= 1")
        if probe.grid != self.grid:
            raise TemplateFormatError(f"probe grid {probe.grid} != index grid {self.grid}")
        rule = self._early_accept if early_accept else None
        stages = query_stages(probe.rotation_variants)
        prepared = PreparedProbe(probe, transform=self._transform.bits)
        seen = np.zeros(0, np.int64)
        owners: list[tuple[str, str]] = []
        scores: list[npt.NDArray[np.float64]] = []
        accept: float | None = None
        for number, queries in enumerate(stages, start=1):
            clear = _query_codes(probe, queries)
            full = self._transform.codes(clear)
            with self._lock:
                total = int(self._faiss.ntotal)
                if total == 0:
                    return SearchResult([], 0, len(stages), False, None)
                if accept is None and rule is not None:
                    accept = rule.score(len(self._ids), len(self._subjects))
                rows = self._nearest(clear, full, shortlist, total)
                rows = rows[~np.isin(rows, seen)]
                refs = ReferenceSet(self.grid, *self._rows.reference_words(rows))
                owners += self._rows.owners(rows)
            seen = np.concatenate([seen, rows])
            scores.append(prepared.scores(refs))
            best = max((float(s.max()) for s in scores if s.size), default=0.0)
            if accept is not None and best >= accept and number < len(stages):
                return SearchResult(self._live(owners, scores), number, len(stages), True,
                                    accept)
        return SearchResult(self._live(owners, scores), len(stages), len(stages), False, accept)

    def _live(self, owners: list[tuple[str, str]],
              scores: list[npt.NDArray[np.float64]]) -> list[Candidate]:
        """Best per subject of the re-scored rows, leaving out templates removed while the
        search ran (the lock is released between stages: a subject deleted meanwhile
        must not be returned)."""
        flat = np.concatenate(scores) if scores else np.zeros(0)
        with self._lock:
            alive = np.array([tid in self._ids for tid, _ in owners], dtype=bool)
        kept = [o for o, keep in zip(owners, alive.tolist(), strict=True) if keep]
        return _best_per_subject(kept, flat[alive] if flat.size else flat)

    def _nearest(self, clear: U8, full: U8, shortlist: int, total: int) -> npt.NDArray[np.int64]:
        """Rows to re-score for the queries ``clear`` (their protected codes ``full``), as in
        :meth:`search_detail`; called under the lock."""
        if self._coarse:
            depth, keep = params.INDEX_COARSE_DEPTH
            _, labels = self._faiss.search(self._protect_pooled(clear),
                                           min(total, shortlist * depth))
            return self._rows.nearest_full(np.unique(labels[labels >= 0]), full,
                                           shortlist * keep)
        dist, labels = self._faiss.search(full, min(total, shortlist))
        return _nearest_rows(dist, labels, shortlist)


class _Rows:
    """Growable columnar storage: code words, mask ids, owners and, until the index turns
    coarse, protected pooled codes (not thread-safe itself)."""

    def __init__(self, grid: tuple[int, int], pooled_bytes: int) -> None:
        self._words = code_nbytes(grid) // 8
        self._mask_bytes = mask_nbytes(grid)
        self.pooled_bytes = pooled_bytes
        self._codes = np.zeros((0, self._words), np.uint64)
        self._mask_ids = np.zeros(0, np.uint32)
        self._pooled: U8 | None = np.zeros((0, pooled_bytes), np.uint8)
        self._mask_table = np.zeros((0, self._mask_bytes), np.uint8)  # distinct cell masks
        self._n_masks = 0
        self._mask_lookup: dict[bytes, int] = {}
        self._owner: list[tuple[str, str] | None] = []  # (template id, subject id)

    def __len__(self) -> int:
        return len(self._owner)

    def nbytes(self) -> int:
        n = len(self._owner)
        pooled = 0 if self._pooled is None else self.pooled_bytes
        return n * (8 * self._words + 4 + pooled) + self._n_masks * self._mask_bytes

    def append(
        self, codes: U8, masks: U8, tids: Sequence[str], sids: Sequence[str],
        pooled: U8 | None,
    ) -> npt.NDArray[np.int64]:
        start, n = len(self._owner), len(tids)
        if start + n > len(self._codes):
            cap = max(start + n, 2 * len(self._codes), 64)
            self._codes = np.resize(self._codes, (cap, self._words))
            self._mask_ids = np.resize(self._mask_ids, cap)
            if self._pooled is not None:
                self._pooled = np.resize(self._pooled, (cap, self.pooled_bytes))
        self._codes[start : start + n] = np.ascontiguousarray(codes).view(np.uint64)
        self._mask_ids[start : start + n] = self._mask_ids_of(masks)
        if self._pooled is not None and pooled is not None:
            self._pooled[start : start + n] = pooled
        self._owner.extend(zip(tids, sids, strict=True))
        return np.arange(start, start + n, dtype=np.int64)

    def pooled_u8(self, rows: npt.NDArray[np.int64]) -> U8:
        """Protected pooled codes of ``rows`` (only before :meth:`drop_pooled`)."""
        if self._pooled is None:
            raise RuntimeError("pooled codes are held by FAISS once the index is coarse")
        return self._pooled[rows]

    def drop_pooled(self) -> None:
        self._pooled = None

    def _mask_ids_of(self, masks: U8) -> npt.NDArray[np.uint32]:
        """Mask-table ids of ``masks`` rows: grouped by a 64-bit hash (fast), then checked
        byte for byte; on a hash collision, grouped exactly."""
        words = np.ascontiguousarray(masks).view(np.uint8).astype(np.uint64)
        weights = np.uint64(0x9E3779B97F4A7C15) ** np.arange(1, words.shape[1] + 1,
                                                              dtype=np.uint64)
        with np.errstate(over="ignore"):
            key = (words * weights).sum(axis=1, dtype=np.uint64)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        ids = np.array([self._mask_id(masks[f]) for f in first], dtype=np.uint32)[inverse]
        if not np.array_equal(self._mask_table[ids], masks):
            distinct, exact = np.unique(masks, axis=0, return_inverse=True)
            ids = np.array([self._mask_id(m) for m in distinct], dtype=np.uint32)[exact.ravel()]
        return ids

    def _mask_id(self, mask: U8) -> int:
        key = mask.tobytes()
        found = self._mask_lookup.get(key)
        if found is None:
            found = self._n_masks
            if found == len(self._mask_table):
                self._mask_table = np.resize(self._mask_table, (max(16, 2 * found), len(mask)))
            self._mask_table[found] = mask
            self._n_masks += 1
            self._mask_lookup[key] = found
        return found

    def release(self, row: int) -> str:
        owner = self._owner[row]
        if owner is None:
            raise KeyError(row)
        self._owner[row] = None
        return owner[0]

    def codes_u8(self, rows: npt.NDArray[np.int64]) -> U8:
        return self._codes[rows].view(np.uint8)

    def masks_u8(self, rows: npt.NDArray[np.int64]) -> U8:
        return self._mask_table[self._mask_ids[rows]]

    def nearest_full(self, rows: npt.NDArray[np.int64], queries: U8,
                     k: int) -> npt.NDArray[np.int64]:
        """The ``k`` of ``rows`` nearest (plain Hamming on the full protected codes) to any
        of ``queries`` ((Q, code bytes) uint8, protected like the rows), nearest first."""
        if len(rows) == 0:
            return rows
        codes = np.ascontiguousarray(self._codes[rows]).view(np.uint8)
        q = np.ascontiguousarray(queries, dtype=np.uint8)
        dist = np.empty((len(q), len(codes)), np.int32)  # FAISS hamdis_t
        # faiss.hammings: the (Q, R) distance table, popcount in C (measured ~10x faster
        # than numpy for 18 queries x 7,200 rows); its stubs do not declare it.
        faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(codes),  # type: ignore[attr-defined]
                       len(q), len(codes), codes.shape[1], faiss.swig_ptr(dist))
        order = np.argsort(dist.min(axis=0), kind="stable")[:k]
        return np.asarray(rows[order], dtype=np.int64)

    def reference_words(
        self, rows: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        cells = self._mask_table[self._mask_ids[rows]]  # (S, mask bytes): one bit per cell
        planes = np.tile(np.unpackbits(cells, axis=1), BITS_PER_CELL)  # the 3 planes share it
        return self._codes[rows], np.ascontiguousarray(np.packbits(planes, axis=1)).view(np.uint64)

    def owners(self, rows: npt.NDArray[np.int64]) -> list[tuple[str, str]]:
        """(template id, subject id) of live rows (FAISS only returns live ones)."""
        found = [self._owner[r] for r in rows.tolist()]
        if any(o is None for o in found):
            raise KeyError("a removed row was shortlisted")
        return [o for o in found if o is not None]


def _nearest_rows(
    dist: npt.NDArray[np.int32], labels: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int64]:
    """The ``k`` distinct rows of smallest distance to any query; -1 padding dropped."""
    ok = labels >= 0  # FAISS pads with -1 when fewer than k are found; never let it through
    rows, d = labels[ok], dist[ok]
    order = np.argsort(d, kind="stable")
    _, first = np.unique(rows[order], return_index=True)
    keep = order[np.sort(first)][:k]
    return np.asarray(rows[keep], dtype=np.int64)


def _best_per_subject(
    owners: list[tuple[str, str]], scores: npt.NDArray[np.float64]
) -> list[Candidate]:
    best: dict[str, Candidate] = {}
    for (template_id, subject_id), score in zip(owners, scores.tolist(), strict=True):
        current = best.get(subject_id)
        if current is None or score > current.score:
            best[subject_id] = Candidate(subject_id, template_id, float(score))
    return sorted(best.values(), key=lambda c: (-c.score, c.subject_id))
