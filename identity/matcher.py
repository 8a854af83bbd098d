"""Shift- and rotation-tolerant Hamming matching of CompCode templates (numpy only).

Distance: the normalised Hamming distance of Kong & Zhang's CompCode matcher
("Competitive coding scheme for palmprint verification", ICPR 2004): for each
translation ``(dy, dx)`` of the probe within ``+-max_shift`` cells, count the
differing code bits among the bits valid in both masks, divide by the number of
such bits, and keep the minimum over translations that leave at least
``min_overlap`` of all code bits valid in both. Rotation: the minimum is also taken
over the probe's rotation variants (codes of its ROI rotated by
``params.FEATURE_ROTATIONS_DEG``), against the reference's variant 0, the brute-force
rotation search of iris and palmprint matchers (Daugman 2004; Kong & Zhang 2004
shift the code, which only covers translation). :func:`distance_to_score` is the
one place where a distance becomes a score.

Speed: :class:`PreparedProbe` shifts and packs the probe once; scoring against
``M`` references is then XOR/AND/popcount on ``(shifts, M, words)`` uint64 arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from identity import params
from identity.errors import TemplateFormatError
from identity.template import BITS_PER_CELL, Template

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
    packed = np.packbits(bits, axis=-1)
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

    ``masks`` has each cell's validity repeated over its 3 code bits.
    """

    grid: tuple[int, int]
    codes: U64 = field(repr=False)
    masks: U64 = field(repr=False)

    @classmethod
    def from_templates(cls, templates: Sequence[Template]) -> ReferenceSet:
        """Pack ``templates`` (all of one grid; raises TemplateFormatError otherwise)."""
        if not templates:
            raise ValueError("at least one reference template is needed")
        grid = _common_grid(templates)
        codes = _pack_words(np.stack([t.code_bits(0).ravel() for t in templates]))
        masks = _pack_words(np.stack([_plane_mask(t.mask_bits(0)).ravel() for t in templates]))
        return cls(grid, codes, masks)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def take(self, rows: npt.NDArray[np.intp]) -> ReferenceSet:
        """The subset at ``rows`` (int array of row numbers)."""
        return ReferenceSet(self.grid, self.codes[rows], self.masks[rows])


def _common_grid(templates: Sequence[Template]) -> tuple[int, int]:
    grids = {t.grid for t in templates}
    if len(grids) != 1:
        raise TemplateFormatError(f"templates of different grids cannot be compared: {grids}")
    return next(iter(grids))


class PreparedProbe:
    """A probe template with its translated variants precomputed, ready for 1:N scoring."""

    def __init__(
        self,
        probe: Template,
        *,
        max_shift: int = params.MATCH_MAX_SHIFT,
        min_overlap: float = params.MATCH_MIN_OVERLAP,
        transform: Callable[[npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
                            tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]] | None = None,
    ) -> None:
        """Precompute ``(2 * max_shift + 1) ** 2`` translations of each variant of ``probe``.

        ``min_overlap`` is the fraction of all code bits that must be valid in both
        templates for a translation to count. ``transform`` (e.g.
        :meth:`identity.revocable.RevocableTransform.bits`), for references stored
        transformed, maps the translated codes and masks in one batch: (S, 3, H, W)
        and (S, H, W) bool arrays, translations being made in the clear first.
        """
        if max_shift < 0 or not 0.0 < min_overlap <= 1.0:
            raise ValueError("max_shift must be >= 0 and min_overlap in (0, 1]")
        self.grid = probe.grid
        self.min_valid_bits = min_overlap * probe.code_bit_count
        codes, masks = [], []
        shifts = range(-max_shift, max_shift + 1)
        for variant in range(probe.variants):
            code, mask = probe.code_bits(variant), probe.mask_bits(variant)
            for dy in shifts:
                for dx in shifts:
                    c, m = _translate(code, mask, dy, dx)
                    codes.append(c)
                    masks.append(m)
        code_arr, mask_arr = np.stack(codes), np.stack(masks)
        if transform is not None:
            code_arr, mask_arr = transform(code_arr, mask_arr)
        n = len(code_arr)
        planes = np.broadcast_to(mask_arr[:, None], code_arr.shape)  # (S, 3, H, W)
        self._codes = _pack_words(code_arr.reshape(n, -1))[:, None, :]  # (S, 1, words)
        self._masks = _pack_words(planes.reshape(n, -1))[:, None, :]

    def distances(self, refs: ReferenceSet) -> F64:
        """Best normalised Hamming distance to each reference: (M,) float64 in [0, 1].

        A reference with no translation of enough overlap gets distance 1.0.
        Raises TemplateFormatError if the grids differ.
        """
        if refs.grid != self.grid:
            raise TemplateFormatError(f"probe grid {self.grid} != reference grid {refs.grid}")
        both = self._masks & refs.masks[None, :, :]  # (S, M, words)
        diff = np.bitwise_count((self._codes ^ refs.codes[None, :, :]) & both).sum(
            axis=-1, dtype=np.int64
        )
        valid = np.bitwise_count(both).sum(axis=-1, dtype=np.int64)
        ok = valid >= self.min_valid_bits
        frac = np.where(ok, diff / np.maximum(valid, 1), np.inf)
        best = frac.min(axis=0)
        return np.asarray(np.where(np.isfinite(best), best, NO_MATCH_DISTANCE), dtype=np.float64)

    def scores(self, refs: ReferenceSet) -> F64:
        """Scores in [0, 1] against each reference (see :func:`distance_to_score`): (M,)."""
        return distance_to_score(self.distances(refs))


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


def hamming_distance(probe: Template, reference: Template) -> float:
    """Shift-tolerant normalised Hamming distance of two templates, in [0, 1]."""
    return float(PreparedProbe(probe).distances(ReferenceSet.from_templates([reference]))[0])


def match_score(probe: Template, reference: Template) -> float:
    """Score in [0, 1] (higher = same palm) of two templates."""
    return float(distance_to_score(hamming_distance(probe, reference)))


def score_matrix(
    probes: Sequence[Template], references: Sequence[Template], *, chunk: int = 512
) -> F64:
    """All-pairs scores, bob.bio style: (N probes, M references) float64 in [0, 1]."""
    out = np.zeros((len(probes), len(references)), dtype=np.float64)
    if not probes or not references:
        return out
    refs = ReferenceSet.from_templates(references)
    for i, p in enumerate(probes):
        prepared = PreparedProbe(p)
        for start in range(0, len(refs), chunk):
            rows = np.arange(start, min(start + chunk, len(refs)))
            out[i, rows] = prepared.scores(refs.take(rows))
    return out
