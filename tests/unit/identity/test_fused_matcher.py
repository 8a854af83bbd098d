"""Fused CompCode + OrdinalCode distance: brute force, the study's computation, errors."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from identity import params
from identity.errors import TemplateFormatError
from identity.matcher import (
    NO_MATCH_DISTANCE,
    PreparedProbe,
    ReferenceSet,
    hamming_distance,
    score_matrix,
)
from identity.revocable import RevocableTransform
from identity.template import Template

W = params.FUSION_WEIGHT_COMPCODE


def _random(rng: np.random.Generator, grid: tuple[int, int], variants: int, valid: float,
            ordinal: bool = True) -> Template:
    code = rng.random((variants, 3, *grid)) < 0.5
    mask = rng.random((variants, *grid)) < valid
    ordc = rng.random((variants, 3, *grid)) < 0.5
    return Template.from_bits(code, mask, ordc if ordinal else None)


def _related(rng: np.random.Generator, t: Template, dy: int, dx: int, noise: float) -> Template:
    """Variant 0 of ``t`` rolled by (dy, dx) with ``noise`` of its bits flipped: a genuine-like
    reference whose best alignment is a real one."""
    def flip(bits: np.ndarray) -> np.ndarray:
        return np.roll(bits, (dy, dx), axis=(1, 2)) ^ (rng.random(bits.shape) < noise)
    mask = np.roll(t.mask_bits(0), (dy, dx), axis=(0, 1))
    h, w = t.grid  # cells that wrapped around are no translation: invalid
    mask[: max(dy, 0)] = mask[h + min(dy, 0) :] = False
    mask[:, : max(dx, 0)] = mask[:, w + min(dx, 0) :] = False
    return Template.from_bits(flip(t.code_bits(0)), mask, flip(t.ordinal_bits(0)))


def _brute_force(probe: Template, ref: Template, max_shift: int, min_overlap: float,
                 fused: bool) -> float:
    """The fused (or CompCode) distance by its definition, one alignment at a time.

    For every probe variant and translation (dy, dx), the probe cell (y, x) lands on
    reference cell (y + dy, x + dx); reference cells nothing lands on are invalid. Valid
    bits = 3 x the cells valid in both; alignments with fewer than min_overlap x 3 x H x W
    valid bits are skipped; distance = (w x differing CompCode bits + (1 - w) x differing
    ordinal bits) / valid bits (w = 1 for CompCode alone); the minimum, else 1.0.
    """
    h, w = probe.grid
    min_bits = min_overlap * 3 * h * w
    rc, rm = ref.code_bits(0), ref.mask_bits(0)
    ro = ref.ordinal_bits(0) if fused else rc
    weight = W if fused else 1.0
    best = np.inf
    for v in range(probe.variants):
        pc, pm = probe.code_bits(v), probe.mask_bits(v)
        po = probe.ordinal_bits(v) if fused else pc
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                valid = diff_c = diff_o = 0
                for y in range(h):
                    for x in range(w):
                        ty, tx = y + dy, x + dx
                        if not (0 <= ty < h and 0 <= tx < w) or not (pm[y, x] and rm[ty, tx]):
                            continue
                        valid += 3
                        diff_c += int(np.sum(pc[:, y, x] != rc[:, ty, tx]))
                        diff_o += int(np.sum(po[:, y, x] != ro[:, ty, tx]))
                if valid >= min_bits:
                    best = min(best, (weight * diff_c + (1.0 - weight) * diff_o) / valid)
    return float(best) if np.isfinite(best) else NO_MATCH_DISTANCE


@pytest.mark.parametrize(
    ("seed", "grid", "variants", "max_shift", "min_overlap"),
    [(0, (8, 8), 3, 2, 0.5), (1, (5, 7), 2, 1, 0.6), (2, (6, 6), 1, 3, 0.3),
     (3, (9, 4), 3, 0, 0.5), (4, (8, 8), 2, 2, 0.9)],
)
def test_fused_distance_equals_brute_force(seed: int, grid: tuple[int, int], variants: int,
                                           max_shift: int, min_overlap: float) -> None:
    rng = np.random.default_rng(seed)
    probe = _random(rng, grid, variants, valid=0.8)
    refs = [_random(rng, grid, 1, valid=v) for v in (0.3, 0.6, 0.85, 1.0)]
    refs += [_related(rng, probe, 1, -1, 0.1), _related(rng, probe, -2, 0, 0.05)]
    for fused in (True, False):
        prepared = PreparedProbe(probe, max_shift=max_shift, min_overlap=min_overlap,
                                 fused=fused)
        got = prepared.distances(ReferenceSet.from_templates(refs, fused=fused))
        want = [_brute_force(probe, r, max_shift, min_overlap, fused) for r in refs]
        assert got == pytest.approx(want, abs=1e-12)
    # the no-match rule shows up in these cases (sparse masks, large min_overlap)
    if min_overlap >= 0.9:
        assert NO_MATCH_DISTANCE in want


def test_fused_distance_over_many_blocks_equals_pairwise_and_brute_force() -> None:
    rng = np.random.default_rng(9)
    probe = _random(rng, (8, 8), 3, valid=0.9)
    refs = [_random(rng, (8, 8), 1, valid=0.9) for _ in range(300)]  # 3 blocks of 128
    refs += [_related(rng, probe, dy, dx, 0.1) for dy, dx in ((0, 0), (1, 0), (-1, -1))]
    got = PreparedProbe(probe, fused=True).distances(ReferenceSet.from_templates(refs,
                                                                                 fused=True))
    assert got == pytest.approx([hamming_distance(probe, r) for r in refs], abs=1e-12)
    for i in (0, 130, 299, 300, 301, 302):
        assert got[i] == pytest.approx(
            _brute_force(probe, refs[i], params.MATCH_MAX_SHIFT, params.MATCH_MIN_OVERLAP,
                         True), abs=1e-12)
    assert got[-3:].max() < 0.2 < got[:-3].min()
    # a subset keeps the ordinal codes
    rows = np.array([300, 3, 301])
    sub = PreparedProbe(probe, fused=True).distances(
        ReferenceSet.from_templates(refs, fused=True).take(rows))
    assert sub == pytest.approx(got[rows], abs=1e-12)


def test_fused_is_the_weighted_mean_when_one_alignment_dominates() -> None:
    rng = np.random.default_rng(5)
    probe = _random(rng, (16, 16), 1, valid=1.0)
    code, ordc = probe.code_bits(), probe.ordinal_bits()
    flip_c, flip_o = rng.random(code.shape) < 0.10, rng.random(code.shape) < 0.20
    ref = Template.from_bits(code ^ flip_c, probe.mask_bits(), ordc ^ flip_o)
    n = code.size
    want = (W * flip_c.sum() + (1 - W) * flip_o.sum()) / n
    assert hamming_distance(probe, ref, fused=True) == pytest.approx(want, abs=1e-12)
    assert hamming_distance(probe, ref, fused=False) == pytest.approx(flip_c.sum() / n)


def test_fused_matching_needs_ordinal_codes() -> None:
    rng = np.random.default_rng(6)
    with_ord = _random(rng, (8, 8), 1, 1.0)
    without = _random(rng, (8, 8), 1, 1.0, ordinal=False)
    with pytest.raises(TemplateFormatError, match="ordinal"):
        PreparedProbe(without, fused=True)
    with pytest.raises(TemplateFormatError, match="1 of 2 reference templates"):
        ReferenceSet.from_templates([with_ord, without], fused=True)
    compcode_refs = ReferenceSet.from_templates([with_ord])
    assert compcode_refs.ordinal is None
    with pytest.raises(TemplateFormatError, match="ordinal"):
        PreparedProbe(with_ord, fused=True).distances(compcode_refs)
    with pytest.raises(TemplateFormatError):
        hamming_distance(with_ord, without)  # the default is the fused distance
    with pytest.raises(TemplateFormatError):
        score_matrix([without], [with_ord])
    # CompCode alone still works on CompCode-only templates
    assert 0.0 <= hamming_distance(with_ord, without, fused=False) <= 1.0
    assert score_matrix([without], [with_ord], fused=False).shape == (1, 1)


def test_fused_with_a_transform_is_refused() -> None:
    rng = np.random.default_rng(7)
    t = _random(rng, (32, 32), 1, 1.0)
    with pytest.raises(ValueError, match="transformed"):
        PreparedProbe(t, fused=True, transform=RevocableTransform(bytes(range(16))).bits)


def test_reference_set_checks_the_ordinal_shape() -> None:
    rng = np.random.default_rng(8)
    refs = ReferenceSet.from_templates([_random(rng, (8, 8), 1, 1.0) for _ in range(3)],
                                       fused=True)
    assert refs.ordinal is not None and refs.ordinal.shape == refs.codes.shape
    with pytest.raises(TemplateFormatError, match="ordinal"):
        ReferenceSet(refs.grid, refs.codes, refs.masks, refs.ordinal[:2])
    empty = refs.take(np.array([], dtype=np.intp))
    assert empty.ordinal is not None and len(empty) == 0
    probe = _random(rng, (8, 8), 2, 1.0)
    assert PreparedProbe(probe, fused=True).distances(empty).shape == (0,)


def test_score_matrix_is_fused_by_default() -> None:
    rng = np.random.default_rng(10)
    probes = [_random(rng, (8, 8), 2, 0.9) for _ in range(2)]
    refs = [_random(rng, (8, 8), 1, 0.9) for _ in range(3)]
    fused = score_matrix(probes, refs)
    for i, p in enumerate(probes):
        want = PreparedProbe(p, fused=True).scores(ReferenceSet.from_templates(refs, fused=True))
        assert np.array_equal(fused[i], want)
    assert not np.array_equal(fused, score_matrix(probes, refs, fused=False))


# --- the study's computation on real Tongji probes ---------------------------------------


def _study() -> ModuleType:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    return importlib.import_module("ordinal_fusion")


@pytest.mark.realdata
def test_fused_distance_equals_the_study_on_tongji(tongji_dir: Path) -> None:
    """identity's fused distance = benchmarks/ordinal_fusion.py's counts + best_distance
    (joint mode, w = 0.6) = fused_threshold_at_scale._score_rows, for 3 session-2 probes
    against 40 session-1 captures of palm000-palm019 (tuning palms)."""
    of = _study()
    from identity.features import extract_features
    from identity.imageio import decode_image
    from identity.roi import extract_roi

    with (tongji_dir / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: (r["identity"], int(r["session"]),
                                                          r["capture"]))
    palms = sorted({r["identity"] for r in rows})[:20]
    gallery = [r for r in rows if r["identity"] in palms and r["session"] == "1"][::5]
    probes = [next(r for r in rows if r["identity"] == p and r["session"] == "2")
              for p in palms[:3]]
    codes = {r["path"]: extract_features(extract_roi(decode_image(
        (tongji_dir / r["path"]).read_bytes())).roi) for r in gallery + probes}
    comp = np.stack([codes[r["path"]].code for r in gallery])
    ordc = np.stack([codes[r["path"]].ordinal for r in gallery])
    mask = np.stack([codes[r["path"]].mask for r in gallery])
    ref_c, ref_o = of.reference_words(comp, mask), of.reference_words(ordc, mask)
    refs = ReferenceSet.from_templates(
        [codes[r["path"]].to_template() for r in gallery], fused=True)
    n_rot = len(params.FEATURE_ROTATIONS_DEG)  # the study searches the rotations only
    for r in probes:
        code = codes[r["path"]]
        rot_code, rot_mask, rot_ord = code.code[:n_rot], code.mask[:n_rot], code.ordinal[:n_rot]
        dc, valid = of.counts(of.probe_alignments(rot_code, rot_mask), ref_c)
        do, _ = of.counts(of.probe_alignments(rot_ord, rot_mask), ref_o)
        study = of.best_distance(0.6 * dc.astype(np.float64) + 0.4 * do, valid)
        study_comp = of.best_distance(dc, valid)
        template = code.to_template()
        plain = PreparedProbe(template.rotations_only(), fused=True).distances(refs)
        assert np.array_equal(plain, study)
        assert np.array_equal(PreparedProbe(template).distances(refs), study_comp)
        # the half-cell refinement can only lower the study's distance
        mine = PreparedProbe(template, fused=True).distances(refs)
        assert (mine <= study).all()
        genuine = [g["identity"] == r["identity"] for g in gallery]
        assert mine[genuine].max() < mine[~np.array(genuine)].min()
