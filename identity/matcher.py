"""Shift- and rotation-tolerant Hamming matching of palm templates, CompCode alone or fused
with OrdinalCode (numpy, and numba-compiled loops in :mod:`identity.kernels`).

CompCode distance: the normalised Hamming distance of Kong & Zhang's CompCode matcher
("Competitive coding scheme for palmprint verification", ICPR 2004): for each
translation ``(dy, dx)`` of the probe within ``+-max_shift`` cells, count the
differing code bits among the bits valid in both masks, divide by the number of
such bits, and keep the minimum over translations that leave at least
``min_overlap`` of all code bits valid in both. Rotation: the minimum is also taken
over the probe's rotation variants (codes of its ROI rotated by
``params.FEATURE_ROTATIONS_DEG``), against the reference's variant 0, the brute-force
rotation search of iris and palmprint matchers (Daugman 2004; Kong & Zhang 2004
shift the code, which only covers translation).

Fused distance (the pipeline's score; ``benchmarks/ordinal_fusion.py`` mode ``joint``,
chosen on Tongji palm000-palm149): score-level fusion of CompCode with the OrdinalCode of
:mod:`identity.ordinal` (Sun et al., CVPR 2005) under one alignment for both codes. The two
codes share CompCode's validity mask, so at every alignment (probe variant x translation)
both count their differing bits over the same ``valid`` jointly valid bits, and::

    d = min over alignments with valid >= min_overlap * 3 * H * W of
        (w * diff_compcode + (1 - w) * diff_ordinal) / valid

with ``w = params.FUSION_WEIGHT_COMPCODE`` (0.6); ``NO_MATCH_DISTANCE`` when no alignment
qualifies. Coarse to fine: a fused probe that carries refinement variants
(``Template.refine_offsets``: the ROI moved by half a cell, sheared, and for ROIs located
in whole hands scaled) is also scored, per reference, at its best rotation's refinement
variants around the best whole-cell translation (+-1 cell in each direction, clipped), and
the smaller distance is kept; the alignment grid becomes half a cell (1 px of the 64 px
CompCode image), and a skew of the palm is searched, at 147 + 9 x 5 = 192 alignments
instead of 147 (147 + 9 x 7 = 210 with the two scales). Chosen on Tongji palm000-palm149
(``identity/params.py``, above ``FEATURE_REFINE_OFFSETS_CELLS`` and
``FEATURE_REFINE_SHEARS``), the scales on the tuning halves of the whole-hand sets
(``FEATURE_REFINE_SCALES_LOCATED``).
CompCode alone ignores the refinement variants. :func:`distance_to_score` is the one place
where a distance becomes a score.

Speed: :class:`PreparedProbe` shifts and packs the probe once; scoring against ``M``
references is then XOR/AND/popcount over ``(alignments, words)`` uint64 rows in the compiled
loops of :mod:`identity.kernels` (no temporaries; the jointly valid count is computed once
per alignment for both codes, and the refinement reads only its 45 (63) rows per
reference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from identity import kernels, params
from identity.errors import TemplateFormatError
from identity.template import BITS_PER_CELL, Template, code_nbytes, mask_nbytes

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

NO_MATCH_DISTANCE = 1.0


def distance_to_score(distance: F64 | float) -> F64:
    """Map normalised Hamming distance(s) in [0, 1] to score(s) in [0, 1], higher = same palm.

    ``score = clip(1 - 2 * distance, 0, 1)``: identical codes score 1, and 0.5 (the
    expected distance of unrelated CompCodes) or worse scores 0. Returns float64.
    """
    d = np.asarray(distance, dtype=np.float64)
    return np.asarray(np.clip(1.0 - 2.0 * d, 0.0, 1.0), dtype=np.float64)


def _pack_words(bits: npt.NDArray[np.bool_]) -> U64:
    """Pack the last axis of a bool array into uint64 words, zero-padded: (..., words)."""
    return _bytes_as_words(np.packbits(bits, axis=-1))


def _words_of(rows: list[bytes]) -> U64:
    """Equal-length byte strings (``numpy.packbits`` rows) as (rows, words) uint64, padded
    as :func:`_pack_words` pads."""
    return _bytes_as_words(np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), -1))


def _bytes_as_words(packed: npt.NDArray[np.uint8]) -> U64:
    """uint8 rows (last axis) zero-padded to whole uint64 words and viewed as them."""
    pad = (-packed.shape[-1]) % 8
    if pad:
        packed = np.concatenate(
            [packed, np.zeros((*packed.shape[:-1], pad), dtype=np.uint8)], axis=-1
        )
    return np.ascontiguousarray(packed).view(np.uint64)


def _plane_mask(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Repeat an (H, W) cell mask over the 3 bit planes: (3, H, W)."""
    return np.broadcast_to(mask, (BITS_PER_CELL, *mask.shape))


@dataclass(frozen=True)
class ReferenceSet:
    """References packed for matching: ``codes`` and ``masks`` are (M, words) uint64.

    ``masks`` has each cell's validity repeated over its 3 code bits; ``ordinal``, when
    present, holds the references' OrdinalCodes packed like ``codes`` (M, words) uint64
    (needed by a fused :class:`PreparedProbe`). Raises TemplateFormatError when the
    arrays' shapes disagree.
    """

    grid: tuple[int, int]
    codes: U64 = field(repr=False)
    masks: U64 = field(repr=False)
    ordinal: U64 | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.codes.ndim != 2 or self.masks.shape != self.codes.shape:
            raise TemplateFormatError(
                f"packed codes {self.codes.shape} and masks {self.masks.shape} differ"
            )
        if self.ordinal is not None and self.ordinal.shape != self.codes.shape:
            raise TemplateFormatError(
                f"packed ordinal codes {self.ordinal.shape} != codes {self.codes.shape}"
            )

    @classmethod
    def from_templates(cls, templates: Sequence[Template], *, fused: bool = False
                       ) -> ReferenceSet:
        """Pack variant 0 of ``templates`` (all of one grid); ``fused`` also packs their
        OrdinalCodes.

        Raises ValueError for no templates and TemplateFormatError for templates of
        different grids or, with ``fused``, a template without an ordinal code.
        """
        if not templates:
            raise ValueError("at least one reference template is needed")
        grid = _common_grid(templates)
        if fused:
            missing = sum(not t.has_ordinal for t in templates)
            if missing:
                raise TemplateFormatError(
                    f"{missing} of {len(templates)} reference templates have no ordinal code;"
                    " fused matching needs both codes"
                )
        if (grid[0] * grid[1]) % 8 == 0:  # the stored bytes are already the packed rows
            n_code, n_mask = code_nbytes(grid), mask_nbytes(grid)
            codes = _words_of([t.code[:n_code] for t in templates])
            masks = _words_of([t.mask[:n_mask] * BITS_PER_CELL for t in templates])
            ordinal = _words_of([t.ordinal[:n_code] for t in templates]) if fused else None
            return cls(grid, codes, masks, ordinal)
        codes = _pack_words(np.stack([t.code_bits(0).ravel() for t in templates]))
        masks = _pack_words(np.stack([_plane_mask(t.mask_bits(0)).ravel() for t in templates]))
        ordinal = (_pack_words(np.stack([t.ordinal_bits(0).ravel() for t in templates]))
                   if fused else None)
        return cls(grid, codes, masks, ordinal)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def take(self, rows: npt.NDArray[np.intp]) -> ReferenceSet:
        """The subset at ``rows`` (int array of row numbers), ordinal codes included."""
        ordinal = None if self.ordinal is None else self.ordinal[rows]
        return ReferenceSet(self.grid, self.codes[rows], self.masks[rows], ordinal)


def _common_grid(templates: Sequence[Template]) -> tuple[int, int]:
    grids = {t.grid for t in templates}
    if len(grids) != 1:
        raise TemplateFormatError(f"templates of different grids cannot be compared: {grids}")
    return next(iter(grids))


Transform = Callable[[npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
                     tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]]


class PreparedProbe:
    """A probe template with its aligned variants precomputed, ready for 1:N scoring.

    ``fused`` (read-only attribute) tells whether :meth:`distances` is the fused CompCode +
    OrdinalCode distance or the CompCode one (module docstring).
    """

    def __init__(
        self,
        probe: Template,
        *,
        max_shift: int = params.MATCH_MAX_SHIFT,
        min_overlap: float = params.MATCH_MIN_OVERLAP,
        transform: Transform | None = None,
        fused: bool = False,
    ) -> None:
        """Precompute ``(2 * max_shift + 1) ** 2`` translations of each variant of ``probe``.

        ``min_overlap`` is the fraction of all code bits that must be valid in both
        templates for a translation to count. ``transform`` (e.g.
        :meth:`identity.revocable.RevocableTransform.bits`), for references stored
        transformed, maps the translated codes and masks in one batch: (S, 3, H, W)
        and (S, H, W) bool arrays, translations being made in the clear first.
        ``fused`` also prepares the probe's OrdinalCode translations, so that
        :meth:`distances` is the fused distance (weight ``params.FUSION_WEIGHT_COMPCODE``).

        Raises ValueError for ``max_shift < 0``, ``min_overlap`` outside (0, 1] or
        ``fused`` with a ``transform`` (stored transformed references carry no ordinal
        code), and TemplateFormatError when ``fused`` and the probe has no ordinal code.
        """
        if max_shift < 0 or not 0.0 < min_overlap <= 1.0:
            raise ValueError("max_shift must be >= 0 and min_overlap in (0, 1]")
        if fused and transform is not None:
            raise ValueError("fused matching is not defined for transformed references")
        if fused and not probe.has_ordinal:
            raise TemplateFormatError("the probe has no ordinal code; fused matching needs it")
        self.grid = probe.grid
        self.fused = fused
        self.weight = params.FUSION_WEIGHT_COMPCODE
        self.min_valid_bits = min_overlap * probe.code_bit_count
        n_rot, n_off = probe.rotation_variants, probe.refine_offsets
        codes, masks, ordinal = _packed_alignments(probe, range(n_rot), max_shift,
                                                   transform=transform, ordinal=fused)
        self._packed = (codes, masks, _NO_WORDS if ordinal is None else ordinal)
        self._n_rot, self._n_shift = n_rot, 2 * max_shift + 1
        self._refine = (_packed_alignments(probe, range(n_rot, n_rot * (1 + n_off)),
                                           max_shift, ordinal=True)
                        if fused and n_off else None)
        self._n_off = n_off if self._refine is not None else 0

    @property
    def alignments(self) -> int:
        """Number of alignments S (rotation variants x translations) searched."""
        return int(self._packed[0].shape[0])

    def distances(self, refs: ReferenceSet) -> F64:
        """Best distance to each reference: (M,) float64 in [0, 1].

        The fused distance when the probe was prepared ``fused``, else the CompCode
        normalised Hamming distance (module docstring); a reference with no alignment of
        enough overlap gets ``NO_MATCH_DISTANCE`` (1.0). Raises TemplateFormatError if
        the grids differ or, for a fused probe, ``refs`` has no ordinal codes.
        """
        ref_words = self._reference_words(refs)
        refinement = None
        if self._refine is not None:
            codes, masks, ordinal = self._refine
            assert ordinal is not None  # asked for
            refinement = (codes, masks, ordinal)
        return kernels.best_distances(
            self._packed, ref_words, fused=self.fused, weight=self.weight,
            min_valid=self.min_valid_bits, no_match=NO_MATCH_DISTANCE,
            refinement=refinement, n_rot=self._n_rot, n_off=self._n_off,
            n_shift=self._n_shift)

    def counts(self, refs: ReferenceSet) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32],
                                                  npt.NDArray[np.int32] | None]:
        """Differing CompCode bits, jointly valid bits and (fused) differing OrdinalCode bits
        at every whole-cell alignment: int32 (S, M) arrays (for studies of the alignments;
        :meth:`distances` does not build them). Raises TemplateFormatError as
        :meth:`distances`."""
        valid, diff, diff_ord = kernels.alignment_counts(
            self._packed, self._reference_words(refs), self.fused)
        return diff, valid, diff_ord if self.fused else None

    def _reference_words(self, refs: ReferenceSet) -> tuple[U64, U64, U64]:
        if refs.grid != self.grid:
            raise TemplateFormatError(f"probe grid {self.grid} != reference grid {refs.grid}")
        if self.fused and refs.ordinal is None:
            raise TemplateFormatError("fused matching needs the references' ordinal codes")
        return refs.codes, refs.masks, _NO_WORDS if refs.ordinal is None else refs.ordinal

    def scores(self, refs: ReferenceSet) -> F64:
        """Scores in [0, 1] against each reference (see :func:`distance_to_score`): (M,)."""
        return distance_to_score(self.distances(refs))


# stands for the ordinal words of templates without them
_NO_WORDS: U64 = np.zeros((0, 0), np.uint64)


def _packed_alignments(probe: Template, variants: range, max_shift: int, *,
                       transform: Transform | None = None, ordinal: bool = False
                       ) -> tuple[U64, U64, U64 | None]:
    """Every translation of ``probe``'s ``variants``, packed: codes, masks repeated over the
    3 bit planes, and (``ordinal``) OrdinalCodes, each (S, words) uint64 in the order of
    :func:`_alignments`; ``transform`` maps the translated codes and masks first. Without a
    transform, rows of whole bytes are moved as packed words
    (:func:`identity.kernels.translated_words`, the same words)."""
    mask = np.stack([probe.mask_bits(v) for v in variants])
    code = np.stack([probe.code_bits(v) for v in variants])
    if transform is None:  # translated and packed as words directly, when the grid allows
        code_w = kernels.translated_words(code, max_shift)
        mask_w = kernels.translated_words(np.broadcast_to(mask[:, None], code.shape), max_shift)
        ord_w = (kernels.translated_words(np.stack([probe.ordinal_bits(v) for v in variants]),
                                          max_shift) if ordinal else None)
        if code_w is not None and mask_w is not None and (ord_w is not None or not ordinal):
            return code_w, mask_w, ord_w
    code_arr, mask_arr = _alignments(code, mask, max_shift)
    if transform is not None:
        code_arr, mask_arr = transform(code_arr, mask_arr)
    n = len(code_arr)
    planes = np.broadcast_to(mask_arr[:, None], code_arr.shape)  # (S, 3, H, W)
    ord_words = None
    if ordinal:
        ord_arr, _ = _alignments(np.stack([probe.ordinal_bits(v) for v in variants]),
                                 mask, max_shift)
        ord_words = _pack_words(ord_arr.reshape(n, -1))
    return (_pack_words(code_arr.reshape(n, -1)), _pack_words(planes.reshape(n, -1)),
            ord_words)


def _alignments(code: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_], max_shift: int
                ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Every translation of every variant: (R, 3, H, W) codes and (R, H, W) masks ->
    (S, 3, H, W) and (S, H, W) bool, S = R * (2 * max_shift + 1) ** 2, in the order
    variant, dy, dx (each from -max_shift up); vacated cells are invalid and 0 bits."""
    k = max_shift
    r, _, h, w = code.shape
    pad_c = np.pad(code, ((0, 0), (0, 0), (k, k), (k, k)))
    pad_m = np.pad(mask, ((0, 0), (k, k), (k, k)))
    # window start (iy, ix) = (k - dy, k - dx): reversed so that dy, dx run upwards
    c = sliding_window_view(pad_c, (h, w), axis=(2, 3))[:, :, ::-1, ::-1]  # (R,3,n,n,H,W)
    m = sliding_window_view(pad_m, (h, w), axis=(1, 2))[:, ::-1, ::-1]  # (R, n, n, H, W)
    n = 2 * k + 1
    codes = np.ascontiguousarray(c.transpose(0, 2, 3, 1, 4, 5)).reshape(r * n * n, 3, h, w)
    return codes, np.ascontiguousarray(m).reshape(r * n * n, h, w)


def _translate(
    code: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_], dy: int, dx: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Move a (3, H, W) code and (H, W) mask by (dy, dx) cells; vacated cells are invalid."""
    h, w = mask.shape
    out_c = np.zeros_like(code)
    out_m = np.zeros_like(mask)
    ys, yd = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    xs, xd = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out_c[:, yd, xd] = code[:, ys, xs]
    out_m[yd, xd] = mask[ys, xs]
    return out_c, out_m


def translate(template: Template, dy: int, dx: int) -> Template:
    """Variant 0 of ``template`` moved by (dy, dx) cells; vacated cells are invalid, 0 bits.

    Returns a one-variant template.
    """
    code, mask = _translate(template.code_bits(0), template.mask_bits(0), dy, dx)
    return Template.from_bits(code, mask)


def hamming_distance(probe: Template, reference: Template, *, fused: bool = True) -> float:
    """Shift- and rotation-tolerant distance of two templates, in [0, 1].

    ``fused`` (the pipeline's distance): the fused CompCode + OrdinalCode distance, which
    needs both templates' ordinal codes (TemplateFormatError otherwise); else CompCode's
    normalised Hamming distance. Raises TemplateFormatError on different grids.
    """
    prepared = PreparedProbe(probe, fused=fused)
    return float(prepared.distances(ReferenceSet.from_templates([reference], fused=fused))[0])


def match_score(probe: Template, reference: Template, *, fused: bool = True) -> float:
    """Score in [0, 1] (higher = same palm) of two templates (``fused`` as in
    :func:`hamming_distance`)."""
    return float(distance_to_score(hamming_distance(probe, reference, fused=fused)))


def score_matrix(
    probes: Sequence[Template], references: Sequence[Template], *, chunk: int = 512,
    fused: bool = True,
) -> F64:
    """All-pairs scores, bob.bio style: (N probes, M references) float64 in [0, 1].

    ``fused`` as in :func:`hamming_distance`; references are scored ``chunk`` at a time.
    Raises TemplateFormatError on different grids or, when ``fused``, a template without
    an ordinal code.
    """
    out = np.zeros((len(probes), len(references)), dtype=np.float64)
    if not probes or not references:
        return out
    refs = ReferenceSet.from_templates(references, fused=fused)
    for i, p in enumerate(probes):
        prepared = PreparedProbe(p, fused=fused)
        for start in range(0, len(refs), chunk):
            rows = np.arange(start, min(start + chunk, len(refs)))
            out[i, rows] = prepared.scores(refs.take(rows))
    return out
