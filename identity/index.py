"""1:N palm search: a FAISS binary shortlist followed by exact shift-tolerant re-scoring.

Storage is columnar: every template is one row of packed numpy arrays (variant-0
code words, an id into a table of distinct masks), so a gallery of a million palms
costs hundreds of bytes per template, not Python objects. The FAISS index
(``IndexBinaryIDMap`` over ``IndexBinaryFlat``, labels = row numbers) only proposes
candidates; every score that leaves this module comes from :mod:`identity.matcher`.

Coarse stage: while the gallery is small (< ``params.INDEX_COARSE_FROM`` templates)
FAISS holds the full 3072-bit codes; from that size on it holds a *pooled* code
(:func:`pool_codes`, majority of each bit plane over ``params.INDEX_COARSE_POOL``
cells, 768 bits), which is 4x cheaper to scan. Either way the probe is translated by
``params.SHORTLIST_QUERY_SHIFTS`` cells before coding (pooling after translation
commutes with the matcher's cell shifts), and the union of the nearest rows is
re-scored exactly. FAISS ids are internal: callers see only their own string ids.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from identity import params
from identity.errors import DuplicateTemplateError, TemplateFormatError
from identity.matcher import PreparedProbe, ReferenceSet, translate
from identity.template import BITS_PER_CELL, Template, code_nbytes, mask_nbytes

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Candidate:
    """One subject proposed by a search: its best-scoring template and that score in [0, 1]."""

    subject_id: str
    template_id: str
    score: float


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


class PalmIndex:
    """Thread-safe in-memory 1:N index of palm templates, keyed by caller-chosen string ids.

    Mutations hold an ``RLock``; a search holds it only while querying FAISS and
    copying the shortlisted rows, so exact re-scoring of concurrent searches runs in
    parallel (numpy releases the GIL). ``coarse_from``: gallery size (templates) from
    which the pooled coarse code replaces the full code in FAISS.
    """

    def __init__(
        self,
        grid: tuple[int, int] = (params.FEATURE_GRID_SIZE, params.FEATURE_GRID_SIZE),
        *,
        coarse_from: int = params.INDEX_COARSE_FROM,
        coarse_pool: tuple[int, int] = params.INDEX_COARSE_POOL,
    ) -> None:
        """Create an empty index for templates of ``grid`` = (H, W) cells."""
        self.grid = grid
        bits = BITS_PER_CELL * grid[0] * grid[1]
        if bits % 64:
            raise ValueError(f"the code length must be a multiple of 64 bits, grid gives {bits}")
        pool_codes(np.zeros((1, code_nbytes(grid)), np.uint8), grid, coarse_pool)  # validate
        self._coarse_from, self._pool = coarse_from, coarse_pool
        self._lock = threading.RLock()
        self._rows = _Rows(grid)
        self._ids: dict[str, int] = {}
        self._subjects: dict[str, list[int]] = {}
        self._coarse = False
        self._faiss = self._new_faiss()

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
        """Add one template.

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
        """Add many templates given as packed variant-0 rows (all or none).

        ``codes``: (n, code_nbytes(grid)) uint8; ``masks``: (n, mask_nbytes(grid))
        uint8 (layout of :mod:`identity.template`). Raises DuplicateTemplateError on a
        known or repeated id and TemplateFormatError on wrong shapes.
        """
        n = len(template_ids)
        if codes.shape != (n, code_nbytes(self.grid)) or masks.shape != (
            n, mask_nbytes(self.grid)
        ) or len(subject_ids) != n:
            raise TemplateFormatError(f"bad packed shapes {codes.shape}, {masks.shape} for {n}")
        with self._lock:
            if len(set(template_ids)) != n or any(t in self._ids for t in template_ids):
                raise DuplicateTemplateError("a template id is already indexed")
            rows = self._rows.append(codes, masks, template_ids, subject_ids)
            for tid, sid, row in zip(template_ids, subject_ids, rows.tolist(), strict=True):
                self._ids[tid] = row
                self._subjects.setdefault(sid, []).append(row)
            if not self._coarse and len(self._ids) >= self._coarse_from:
                self._coarse = True
                self._faiss = self._new_faiss()
                rows = np.fromiter(self._ids.values(), np.int64, len(self._ids))
            self._faiss_add(rows)

    def _new_faiss(self) -> faiss.IndexBinaryIDMap:
        sample = self._coarse_code(np.zeros((1, code_nbytes(self.grid)), np.uint8))
        return faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(8 * sample.shape[1]))

    def _coarse_code(self, codes: U8) -> U8:
        return pool_codes(codes, self.grid, self._pool) if self._coarse else codes

    def _faiss_add(self, rows: npt.NDArray[np.int64]) -> None:
        step = 65536  # bounds the unpacked temporary of pool_codes
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            codes = self._coarse_code(self._rows.codes_u8(part))
            self._faiss.add_with_ids(codes, part.astype(np.int64))

    def export(self) -> tuple[list[str], list[str], U8, U8]:
        """Live rows as (template ids, subject ids, codes (n, code bytes), masks (n, mask
        bytes)) uint8, ready for :meth:`add_packed` (used by :mod:`identity.snapshot`)."""
        with self._lock:
            rows = np.fromiter(self._ids.values(), np.int64, len(self._ids))
            owners = self._rows.owners(rows)
            codes, masks = self._rows.codes_u8(rows), self._rows.masks_u8(rows)
        return [o[0] for o in owners], [o[1] for o in owners], codes, masks

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

    def search(self, probe: Template, shortlist: int) -> list[Candidate]:
        """Subjects whose templates are near ``probe``, best first (one entry per subject).

        The ``shortlist`` templates nearest to any translated query (FAISS, Hamming on
        full codes; on pooled codes ``params.INDEX_COARSE_DEPTH`` widens both) are
        re-scored with the shift-tolerant matcher; each subject gets its best score.
        Returns an empty list for an empty index.
        Raises ValueError if ``shortlist < 1`` and TemplateFormatError on a grid mismatch.
        """
        if shortlist < 1:
            raise ValueError("shortlist must be >= 1")
        if probe.grid != self.grid:
            raise TemplateFormatError(f"probe grid {probe.grid} != index grid {self.grid}")
        prepared = PreparedProbe(probe)
        shifts = params.SHORTLIST_QUERY_SHIFTS
        moved = [translate(probe, dy, dx) for dy in shifts for dx in shifts]
        query = np.stack([np.frombuffer(t.reference_code, np.uint8) for t in moved])
        with self._lock:
            total = int(self._faiss.ntotal)
            if total == 0:
                return []
            deep = params.INDEX_COARSE_DEPTH if self._coarse else (1, 1)
            dist, labels = self._faiss.search(self._coarse_code(query),
                                              min(total, shortlist * deep[0]))
            rows = _nearest_rows(dist, labels, shortlist * deep[1])
            refs = ReferenceSet(self.grid, *self._rows.reference_words(rows))
            owners = self._rows.owners(rows)
        return _best_per_subject(owners, prepared.scores(refs))


class _Rows:
    """Growable columnar storage: code words, mask ids, owners (not thread-safe itself)."""

    def __init__(self, grid: tuple[int, int]) -> None:
        self._words = code_nbytes(grid) // 8
        self._mask_bytes = mask_nbytes(grid)
        self._codes = np.zeros((0, self._words), np.uint64)
        self._mask_ids = np.zeros(0, np.uint32)
        self._mask_table = np.zeros((0, self._mask_bytes), np.uint8)  # distinct cell masks
        self._n_masks = 0
        self._mask_lookup: dict[bytes, int] = {}
        self._owner: list[tuple[str, str] | None] = []  # (template id, subject id)

    def nbytes(self) -> int:
        n = len(self._owner)
        return n * (8 * self._words + 4) + self._n_masks * self._mask_bytes

    def append(
        self, codes: U8, masks: U8, tids: Sequence[str], sids: Sequence[str]
    ) -> npt.NDArray[np.int64]:
        start, n = len(self._owner), len(tids)
        if start + n > len(self._codes):
            cap = max(start + n, 2 * len(self._codes), 64)
            self._codes = np.resize(self._codes, (cap, self._words))
            self._mask_ids = np.resize(self._mask_ids, cap)
        self._codes[start : start + n] = np.ascontiguousarray(codes).view(np.uint64)
        self._mask_ids[start : start + n] = self._mask_ids_of(masks)
        self._owner.extend(zip(tids, sids, strict=True))
        return np.arange(start, start + n, dtype=np.int64)

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
