"""Ordinal palmprint code, alone and fused at score level with our CompCode, on Tongji ROIs.

OrdinalCode (Z. Sun, T. Tan, Y. Wang and S. Z. Li, "Ordinal palmprint representation for
personal identification", CVPR 2005): orthogonal line ordinal features
``OF(theta) = f(theta) - f(theta + pi/2)`` with ``f(x, y, theta) = exp(-(x cos theta +
y sin theta)^2 / dx^2 - (-x sin theta + y cos theta)^2 / dy^2)``, an elongated 2-D Gaussian
(``dx > dy``, long axis along ``theta``), for ``theta`` in ``{0, pi/6, pi/3}``; one bit per
orientation = the sign of the filtered ROI. Here the signed responses are averaged over the
cells of the same 32 x 32 grid as CompCode before the sign is taken, so each cell holds 3
bits, the bit layout of :class:`identity.template.Template`: the ordinal code is matched
with the very machinery of :mod:`identity.matcher`. For a fair comparison it shares
everything else with CompCode (:mod:`identity.features`): the ROI of
:func:`identity.roi.extract_roi`, the rotation variants ``params.FEATURE_ROTATIONS_DEG``
(the work image is rotated before filtering), the validity mask of CompCode's own variant
(same ROI, rotation and grid), and the +-``params.MATCH_MAX_SHIFT`` cell shift search
with ``params.MATCH_MIN_OVERLAP``.

Score-level fusion: weighted mean ``w * d_comp + (1 - w) * d_ord`` of the two normalised
Hamming distances (score = :func:`identity.matcher.distance_to_score` of it), in two modes:
``own`` (each coder's distance minimised over shifts and rotation variants on its own, then
fused) and ``joint`` (the fused distance minimised over shift and variant: one alignment for
both codes). The two codes share the validity mask, so at every alignment both distances
have the same denominator and ``joint`` with ``w = 0.5`` is the Hamming distance of the
6-bit concatenated code.

Protocol (as in ``identity/params.py``): identities sorted; tuning half palm000-palm149,
held-out half palm150-palm299. Genuine: every session-1 x session-2 capture of a palm
(session 2 is the probe); impostor: each session-2 capture against the first session-1
capture of every other palm of the same set. Every ordinal parameter setting and fusion
weight is measured on the tuning half only; one candidate (lowest tuning EER, ties broken by
FNMR at FMR 1e-5; CompCode alone is not a candidate) is picked by a fixed rule and only
then run on the held-out half and on all 300 palms (same impostor sampling rule for all
300: each session-2 capture against the first session-1 capture of the 299 other palms;
the full impostor set, ~9M comparisons x 147 alignments, is too slow for numpy here).
CompCode alone is reported under the same protocol next to it. The ordinal grid stays at
32 x 32 cells so that mask, shifts and alignment are CompCode's.

Also reported: packed template bytes of the ordinal code per variant, and the time of one
comparison (prepared probe against 1,500 references, one core): CompCode alone with
:class:`identity.matcher.PreparedProbe`, ``own`` fusion with two of them, ``joint`` fusion
with this script's per-alignment counts.

Run (data in ``$STOREFRONT_DATA_DIR``; 9.4 min on one core, load average ~1.2)::

    .venv/bin/python benchmarks/ordinal_fusion.py --json benchmarks/results/ordinal_fusion.json

``--tuning-only`` runs the sweep and the pick without opening the held-out half.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from bench_report import palm_set_folder
from numpy.lib.stride_tricks import sliding_window_view

from identity import evaluation as ev
from identity import params
from identity.errors import IdentityError
from identity.features import extract_features
from identity.imageio import decode_image
from identity.matcher import NO_MATCH_DISTANCE, PreparedProbe, ReferenceSet, distance_to_score
from identity.roi import extract_roi
from identity.template import BITS_PER_CELL, Template

Bits = npt.NDArray[np.bool_]
U64 = npt.NDArray[np.uint64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]

GRID = params.FEATURE_GRID_SIZE
ROTATIONS = params.FEATURE_ROTATIONS_DEG
MAX_SHIFT = params.MATCH_MAX_SHIFT
MIN_VALID_BITS = params.MATCH_MIN_OVERLAP * BITS_PER_CELL * GRID * GRID
ORIENTATIONS = (0.0, math.pi / 6.0, math.pi / 3.0)  # Sun et al. 2005
FMR_TARGET = 1e-5
TUNING_IDENTITIES = 150
# Sweep: work side (px), Gaussian sigmas (dx, dy) in pixels of the 128 px ROI (scaled to the
# work image), kernel half-side = ceil(factor * dx) work px. The first sweep had (5, 1), (6, 2),
# (8, 2), (10, 3); (5, 1), its smallest, was best on the tuning half, so smaller and
# thinner filters were added (still tuning half only) before the held-out half was opened.
WORK_SIZES = (64, 128)
SIGMAS = ((3.0, 1.0), (4.0, 1.0), (5.0, 1.0), (6.0, 1.0), (5.0, 1.5), (6.0, 2.0), (8.0, 2.0),
          (10.0, 3.0))
SIZE_FACTORS = (1.5, 2.5)
WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # CompCode's weight w in the fused mean
MODES = ("own", "joint")
TIMING_REFERENCES = 1500


@dataclass(frozen=True)
class OrdinalParams:
    """One OrdinalCode setting: work side (px), sigmas in ROI px, kernel half-side factor."""

    work_size: int
    sigma_long: float
    sigma_short: float
    size_factor: float

    @property
    def name(self) -> str:
        """Short label, e.g. ``w64_s6x2_k2.5``."""
        return (f"w{self.work_size}_s{self.sigma_long:g}x{self.sigma_short:g}"
                f"_k{self.size_factor:g}")


def ordinal_bank(p: OrdinalParams, roi_size: int) -> list[npt.NDArray[np.float32]]:
    """The 3 orthogonal line ordinal filters ``OF(theta)`` of Sun et al. (CVPR 2005).

    float32 square kernels of side ``2 * ceil(size_factor * dx) + 1`` work pixels, where
    ``dx = sigma_long * work_size / roi_size``; each has zero mean (both lobes have the
    same mass, the mean is removed against sampling error).
    """
    scale = p.work_size / roi_size
    dx, dy = p.sigma_long * scale, p.sigma_short * scale
    half = math.ceil(p.size_factor * dx)
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)

    def lobe(theta: float) -> F64:
        along = x * math.cos(theta) + y * math.sin(theta)
        across = -x * math.sin(theta) + y * math.cos(theta)
        return np.asarray(np.exp(-(along / dx) ** 2 - (across / dy) ** 2), np.float64)

    kernels = []
    for theta in ORIENTATIONS:
        k = lobe(theta) - lobe(theta + math.pi / 2.0)
        kernels.append((k - k.mean()).astype(np.float32))
    return kernels


def ordinal_code(roi: npt.NDArray[np.uint8], p: OrdinalParams) -> Bits:
    """OrdinalCode bits of a square uint8 ROI: bool ``(R, 3, GRID, GRID)``, R = rotations.

    Bit ``(r, j, y, x)`` is True when the mean of ``OF(theta_j)`` over cell ``(y, x)`` of
    the ROI rotated by ``ROTATIONS[r]`` degrees is positive (the line along ``theta_j``
    is brighter than the one across it).
    """
    work = cv2.resize(roi, (p.work_size, p.work_size), interpolation=cv2.INTER_AREA)
    img = work.astype(np.float32)
    bank = ordinal_bank(p, roi.shape[0])
    out = np.empty((len(ROTATIONS), BITS_PER_CELL, GRID, GRID), dtype=bool)
    for r, angle in enumerate(ROTATIONS):
        rotated = _rotate(img, angle)
        for j, k in enumerate(bank):
            resp = cv2.filter2D(rotated, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)
            out[r, j] = cv2.resize(resp, (GRID, GRID), interpolation=cv2.INTER_AREA) > 0.0
    return out


def _rotate(img: npt.NDArray[np.float32], angle_deg: float) -> npt.NDArray[np.float32]:
    """``img`` rotated about its centre as :mod:`identity.features` rotates it."""
    if angle_deg == 0.0:
        return img
    h, w = img.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    return np.asarray(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT), np.float32)


# --- matching: per-alignment counts ------------------------------------------------------


def _pack(bits: Bits) -> U64:
    """Pack the last axis (a multiple of 64 bits) into uint64 words: (..., words)."""
    return np.ascontiguousarray(np.packbits(bits, axis=-1)).view(np.uint64)


def probe_alignments(code: Bits, mask: Bits) -> tuple[U64, U64]:
    """Every shift of every variant of a probe, packed: codes and plane masks (S, words).

    ``code`` bool (R, 3, G, G), ``mask`` bool (R, G, G); S = R * (2 * MAX_SHIFT + 1) ** 2.
    Vacated cells are invalid, as in :func:`identity.matcher.PreparedProbe`.
    """
    k, g = MAX_SHIFT, code.shape[-1]
    c = sliding_window_view(np.pad(code, ((0, 0), (0, 0), (k, k), (k, k))), (g, g),
                            axis=(2, 3))  # (R, 3, 2k+1, 2k+1, G, G)
    m = sliding_window_view(np.pad(mask, ((0, 0), (k, k), (k, k))), (g, g), axis=(1, 2))
    planes = np.broadcast_to(m[:, :, :, None], (*m.shape[:3], BITS_PER_CELL, g, g))
    bits = c.transpose(0, 2, 3, 1, 4, 5).reshape(-1, BITS_PER_CELL * g * g)
    return _pack(bits), _pack(planes.reshape(-1, BITS_PER_CELL * g * g))


def reference_words(code: Bits, mask: Bits) -> tuple[U64, U64]:
    """Variant 0 of references, packed: codes and plane masks (M, words).

    ``code`` bool (M, R, 3, G, G), ``mask`` bool (M, R, G, G).
    """
    m = np.broadcast_to(mask[:, 0, None], code[:, 0].shape)
    return _pack(code[:, 0].reshape(len(code), -1)), _pack(m.reshape(len(code), -1))


def counts(probe: tuple[U64, U64], refs: tuple[U64, U64]) -> tuple[I32, I32]:
    """Differing and jointly valid bits at every alignment: two int32 (S, M) arrays."""
    both = probe[1][:, None, :] & refs[1][None, :, :]
    diff = np.bitwise_count((probe[0][:, None, :] ^ refs[0][None, :, :]) & both)
    return (diff.sum(axis=-1, dtype=np.int32),
            np.bitwise_count(both).sum(axis=-1, dtype=np.int32))


def best_distance(diff: npt.NDArray[Any], valid: I32) -> F64:
    """Minimum over the alignment axis (-2) of ``diff / valid``, alignments with fewer than
    ``MIN_VALID_BITS`` valid bits skipped; ``NO_MATCH_DISTANCE`` where none is left."""
    frac = np.where(valid >= MIN_VALID_BITS, diff / np.maximum(valid, 1), np.inf)
    best = frac.min(axis=-2)
    return np.asarray(np.where(np.isfinite(best), best, NO_MATCH_DISTANCE), np.float64)


# --- data and protocol --------------------------------------------------------------------


@dataclass
class Palms:
    """Acquired captures: ROIs (N, S, S) uint8, identity and session per capture, in
    manifest order; CompCode bits (N, R, 3, G, G) and masks (N, R, G, G)."""

    rois: npt.NDArray[np.uint8]
    identity: list[str]
    session: list[int]
    comp: Bits
    mask: Bits
    failures: list[str]


def load(folder: Path) -> Palms:
    """Decode, ROI and CompCode every capture of ``folder/manifest.csv`` (failures listed)."""
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows.sort(key=lambda r: (r["identity"], int(r["session"]), r["capture"]))
    rois, ids, sessions, comps, masks, failures = [], [], [], [], [], []
    for row in rows:
        try:
            roi = extract_roi(decode_image((folder / row["path"]).read_bytes())).roi
        except IdentityError as exc:
            failures.append(f"{row['path']}: {exc}")
            continue
        code = extract_features(roi)
        n_rot = len(params.FEATURE_ROTATIONS_DEG)  # the rotations (no refinement variants)
        rois.append(roi)
        ids.append(row["identity"])
        sessions.append(int(row["session"]))
        comps.append(code.code[:n_rot])
        masks.append(code.mask[:n_rot])
    return Palms(np.stack(rois), ids, sessions, np.stack(comps), np.stack(masks), failures)


@dataclass(frozen=True)
class Trial:
    """One palm's comparisons: probe rows (session 2), reference rows (its own session-1
    captures first, ``genuine`` of them, then the first session-1 capture of each other
    palm of the set)."""

    probes: npt.NDArray[np.intp]
    refs: npt.NDArray[np.intp]
    genuine: int


def protocol(palms: Palms, identities: Sequence[str]) -> list[Trial]:
    """The trials of the sets' protocol over ``identities`` (palms lacking a session skipped)."""
    rows: dict[str, dict[int, list[int]]] = {}
    for n, (ident, sess) in enumerate(zip(palms.identity, palms.session, strict=True)):
        rows.setdefault(ident, {}).setdefault(sess, []).append(n)
    use = [i for i in identities if {1, 2} <= set(rows.get(i, {}))]
    first = {i: rows[i][1][0] for i in use}
    return [Trial(np.array(rows[i][2]), np.array(rows[i][1] + [first[j] for j in use if j != i]),
                  len(rows[i][1])) for i in use]


@dataclass
class Counts:
    """Per trial: differing bits (P, S, M) int16 of one coder; ``valid`` is shared."""

    diff: list[npt.NDArray[np.int16]]


def count_all(trials: Sequence[Trial], code: Bits, mask: Bits,
              ) -> tuple[Counts, list[npt.NDArray[np.int16]]]:
    """Per-alignment counts of every trial for one coder's bits (and the valid counts)."""
    diffs, valids = [], []
    for t in trials:
        refs = reference_words(code[t.refs], mask[t.refs])
        d = np.empty((len(t.probes), (2 * MAX_SHIFT + 1) ** 2 * len(ROTATIONS), len(t.refs)),
                     dtype=np.int16)
        v = np.empty_like(d)
        for n, row in enumerate(t.probes):
            d[n], v[n] = counts(probe_alignments(code[row], mask[row]), refs)
        diffs.append(d)
        valids.append(v)
    return Counts(diffs), valids


def split(trials: Sequence[Trial], dist: Sequence[F64]) -> tuple[F64, F64]:
    """Genuine and impostor scores from per-trial (P, M) distances."""
    gen = np.concatenate([d[:, :t.genuine].ravel() for t, d in zip(trials, dist, strict=True)])
    imp = np.concatenate([d[:, t.genuine:].ravel() for t, d in zip(trials, dist, strict=True)])
    return distance_to_score(gen), distance_to_score(imp)


def rates(gen: F64, imp: F64) -> dict[str, Any]:
    """EER and FNMR at FMR 1e-5 (percent, 4 decimals) and the comparison counts."""
    fnmr = ev.fnmr_at_fmr(gen, imp, FMR_TARGET)
    return {"eer_pct": round(100 * ev.equal_error_rate(gen, imp), 4),
            "fnmr_at_1e-5_pct": None if fnmr is None else round(100 * fnmr, 4),
            "genuine": int(gen.size), "impostor": int(imp.size)}


def fused_rows(trials: Sequence[Trial], comp: Counts, ordc: Counts,
               valid: Sequence[npt.NDArray[np.int16]], label: str,
               weights: Sequence[float], modes: Sequence[str]) -> list[dict[str, Any]]:
    """Rate rows of the ordinal code alone and of every (mode, weight) fusion with CompCode."""
    own_c = [best_distance(d, v) for d, v in zip(comp.diff, valid, strict=True)]
    own_o = [best_distance(d, v) for d, v in zip(ordc.diff, valid, strict=True)]
    out = [{"setting": label, "mode": "alone", "w_comp": 0.0, **rates(*split(trials, own_o))}]
    for mode, w in itertools.product(modes, weights):
        if mode == "own":
            dist = [w * c + (1.0 - w) * o for c, o in zip(own_c, own_o, strict=True)]
        else:
            dist = [best_distance(w * dc.astype(np.float64) + (1.0 - w) * do, v)
                    for dc, do, v in zip(comp.diff, ordc.diff, valid, strict=True)]
        out.append({"setting": label, "mode": mode, "w_comp": w,
                    **rates(*split(trials, dist))})
    return out


def check_against_matcher(palms: Palms, trial: Trial, comp: Counts,
                          valid: Sequence[npt.NDArray[np.int16]]) -> None:
    """Raise RuntimeError unless this script's CompCode distances of ``trial`` equal
    :class:`identity.matcher.PreparedProbe`'s (the same bits, shifts and overlap rule)."""
    refs = ReferenceSet.from_templates(
        [Template.from_bits(palms.comp[r], palms.mask[r]) for r in trial.refs])
    mine = best_distance(comp.diff[0], valid[0])
    for n, row in enumerate(trial.probes):
        theirs = PreparedProbe(Template.from_bits(palms.comp[row], palms.mask[row])).distances(
            refs)
        if not np.allclose(mine[n], theirs, atol=1e-12):
            raise RuntimeError("per-alignment counts disagree with identity.matcher")


def ordinal_bits(palms: Palms, p: OrdinalParams, rows: npt.NDArray[np.intp]) -> Bits:
    """Ordinal codes of the captures at ``rows`` (others left False): (N, R, 3, G, G)."""
    out = np.zeros(palms.comp.shape, dtype=bool)
    for r in rows:
        out[r] = ordinal_code(palms.rois[r], p)
    return out


def _rows_of(trials: Sequence[Trial]) -> npt.NDArray[np.intp]:
    return np.unique(np.concatenate([np.concatenate([t.probes, t.refs]) for t in trials]))


def evaluate(palms: Palms, trials: Sequence[Trial], p: OrdinalParams, w: float,
             mode: str) -> dict[str, Any]:
    """CompCode alone, the candidate, and its ordinal component alone, on ``trials``."""
    rows = _rows_of(trials)
    comp, valid = count_all(trials, palms.comp, palms.mask)
    ordc, _ = count_all(trials, ordinal_bits(palms, p, rows), palms.mask)
    own_c = [best_distance(d, v) for d, v in zip(comp.diff, valid, strict=True)]
    fused = fused_rows(trials, comp, ordc, valid, p.name, (w,), (mode,))
    return {"identities": len(trials), "compcode": rates(*split(trials, own_c)),
            "candidate": fused[1], "ordinal_component_alone": fused[0]}


def timing(palms: Palms, trials: Sequence[Trial], p: OrdinalParams, w: float,
           repeats: int = 7) -> dict[str, float]:
    """Microseconds per comparison (prepared probe vs TIMING_REFERENCES refs, median of
    ``repeats``) and per probe preparation, for CompCode alone and both fusion modes."""
    probe = int(trials[0].probes[0])
    ref_rows = np.array([r for t in trials for r in t.refs[:t.genuine]])[:TIMING_REFERENCES]
    ordb = ordinal_bits(palms, p, np.append(ref_rows, probe))
    t_comp = [Template.from_bits(palms.comp[r], palms.mask[r]) for r in ref_rows]
    t_ord = [Template.from_bits(ordb[r], palms.mask[r]) for r in ref_rows]
    set_c, set_o = ReferenceSet.from_templates(t_comp), ReferenceSet.from_templates(t_ord)
    probe_c = Template.from_bits(palms.comp[probe], palms.mask[probe])
    probe_o = Template.from_bits(ordb[probe], palms.mask[probe])
    words_c = reference_words(palms.comp[ref_rows], palms.mask[ref_rows])
    words_o = reference_words(ordb[ref_rows], palms.mask[ref_rows])

    def clock(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def joint() -> F64:
        pc = probe_alignments(palms.comp[probe], palms.mask[probe])
        po = probe_alignments(ordb[probe], palms.mask[probe])
        dc, valid = counts(pc, words_c)
        both = pc[1][:, None, :] & words_o[1][None, :, :]
        do = np.bitwise_count((po[0][:, None, :] ^ words_o[0][None, :, :]) & both).sum(
            axis=-1, dtype=np.int32)
        return best_distance(w * dc + (1.0 - w) * do, valid)

    def comp_only() -> F64:
        return best_distance(*counts(probe_alignments(palms.comp[probe], palms.mask[probe]),
                                     words_c))

    prep_c, prep_o = PreparedProbe(probe_c), PreparedProbe(probe_o)
    m = len(ref_rows)
    us = 1e6 / m
    return {
        "references": m,
        "matcher_compcode_us_per_comparison": round(us * clock(
            lambda: prep_c.distances(set_c)), 2),
        "matcher_fused_own_us_per_comparison": round(us * clock(
            lambda: w * prep_c.distances(set_c) + (1 - w) * prep_o.distances(set_o)), 2),
        "matcher_probe_preparation_ms_per_coder": round(1e3 * clock(
            lambda: PreparedProbe(probe_c)), 2),
        # this script's per-alignment counts, probe alignments included (M references)
        "script_compcode_us_per_comparison": round(us * clock(comp_only), 2),
        "script_fused_joint_us_per_comparison": round(us * clock(joint), 2),
        "compcode_extraction_ms": round(1e3 * clock(
            lambda: extract_features(palms.rois[probe])), 2),
        "ordinal_extraction_ms": round(1e3 * clock(lambda: ordinal_code(palms.rois[probe], p)), 2),
    }


def pick(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The tuning row with the lowest EER, ties broken by FNMR at 1e-5 (None = worst)."""
    def key(r: dict[str, Any]) -> tuple[float, float]:
        fnmr = r["fnmr_at_1e-5_pct"]
        return r["eer_pct"], math.inf if fnmr is None else fnmr
    return min(rows, key=key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--palms", type=Path, default=None,
                        help="palm folder (default $STOREFRONT_DATA_DIR/palm/tongji-roi)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--tuning-only", action="store_true",
                        help="sweep and pick on the tuning half; do not open the held-out half")
    args = parser.parse_args(argv)
    folder = palm_set_folder(args.palms, "tongji-roi")
    started = time.perf_counter()
    palms = load(folder)
    ids = sorted(set(palms.identity))
    tuning_ids, held_ids = ids[:TUNING_IDENTITIES], ids[TUNING_IDENTITIES:]
    tuning = protocol(palms, tuning_ids)
    print(f"loaded {len(palms.identity)} captures ({len(palms.failures)} failed) in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)

    comp, valid = count_all(tuning, palms.comp, palms.mask)
    check_against_matcher(palms, tuning[0], comp, valid)
    own_c = [best_distance(d, v) for d, v in zip(comp.diff, valid, strict=True)]
    baseline_tuning = rates(*split(tuning, own_c))
    print(f"compcode tuning {baseline_tuning}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    settings = [OrdinalParams(ws, sl, ss, k) for ws, (sl, ss), k
                in itertools.product(WORK_SIZES, SIGMAS, SIZE_FACTORS)]
    tuning_rows = _rows_of(tuning)
    for p in settings:
        t0 = time.perf_counter()
        ordc, _ = count_all(tuning, ordinal_bits(palms, p, tuning_rows), palms.mask)
        new = fused_rows(tuning, comp, ordc, valid, p.name, WEIGHTS, MODES)
        rows.extend(new)
        best = pick(new)
        print(f"{p.name}: alone {new[0]['eer_pct']} / {new[0]['fnmr_at_1e-5_pct']}, best "
              f"{best['mode']} w={best['w_comp']} {best['eer_pct']} / "
              f"{best['fnmr_at_1e-5_pct']} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    del comp, valid, own_c
    chosen = pick(rows)
    chosen_p = next(p for p in settings if p.name == chosen["setting"])
    report: dict[str, Any] = {
        "palms": str(folder), "captures": len(palms.identity), "failures": palms.failures,
        "protocol": "genuine: session-1 x session-2 of each palm; impostor: each session-2 "
                    "capture vs the first session-1 capture of every other palm of the set",
        "grid": GRID, "rotations_deg": list(ROTATIONS), "max_shift": MAX_SHIFT,
        "orientations_rad": list(ORIENTATIONS), "fusion_weights": list(WEIGHTS),
        "settings": [asdict(p) | {"name": p.name} for p in settings],
        "tuning": {"identities": len(tuning), "compcode": baseline_tuning, "rows": rows},
        "chosen": chosen | {"params": asdict(chosen_p)},
        "template_bytes": {
            "ordinal_code_per_variant": (BITS_PER_CELL * GRID * GRID + 7) // 8,
            "mask_per_variant_shared_with_compcode": (GRID * GRID + 7) // 8,
            "variants": len(ROTATIONS)},
    }
    if not args.tuning_only:
        report["held_out"] = evaluate(palms, protocol(palms, held_ids), chosen_p,
                                      chosen["w_comp"], chosen["mode"])
        report["all"] = evaluate(palms, protocol(palms, ids), chosen_p, chosen["w_comp"],
                                 chosen["mode"])
    report["timing"] = timing(palms, tuning, chosen_p, chosen["w_comp"])
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = {k: v for k, v in report.items() if k not in ("tuning", "settings", "failures")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
