"""Study: which probe variants (rotation, sub-cell translation, scale) the matcher should search.

The study that chose ``params.FEATURE_REFINE_OFFSETS_CELLS`` (2026-12-01). Its variants are
warps of the work image (the content moved down / right by half a cell); the pipeline adopted
pools the cell grid moved down / right instead (content up / left, no second filtering), so its
own numbers come from ``benchmarks/roi_halves.py`` (benchmarks/README.md, issue 3).

The pipeline codes a probe at the rotations of ``params.FEATURE_ROTATIONS_DEG`` and matches
it over +-``MATCH_MAX_SHIFT`` whole cells (2 px of the 64 px CompCode work image) against
the references' unrotated code. This script codes the probes at other sets of variants,
each an affine warp of the work images (rotation in degrees about the centre, translation
in fractions of the ROI side, scale about the centre), and scores them with the pipeline's
fused matcher against the pipeline's own reference templates, so that every set is
compared on the same references and the same protocol (session 1 x session 2 of the
manifest, as ``storefront identity evaluate``). Variant sets that are studied:

* ``base``: the pipeline (rotations 0, -4.5, +4.5); checked bit for bit against
  :func:`identity.features.extract_features`.
* ``half``: base plus the unrotated probe moved by half a cell right, down and both
  (the alignment grid becomes 1 px of the work image instead of 2 px).
* ``half_all``: every rotation at the four half-cell offsets (12 variants).
* ``scale``: base plus the unrotated probe scaled by 1 -+ ``--scale-step``.

Usage::

    STOREFRONT_DATA_DIR=../shared/data .venv/bin/python benchmarks/probe_variants.py \
        --set tongji-roi --identities palm000:palm149 --json benchmarks/results/probe_variants.json

``--identities A:B`` keeps identities whose names sort between A and B inclusive (tune on
the tuning palms only). Prints and writes EER and FNMR at FMR 1e-3 / 1e-4 / 1e-5 per set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from identity import cells, params
from identity import evaluation as ev
from identity.evaluate_run import read_manifest
from identity.features import (
    _ORIENTATION_BITS,
    DEFAULT_FEATURE_PARAMS,
    PalmCode,
    _local_stats,
    _validity,
    extract_features,
    gabor_bank,
)
from identity.imageio import decode_image
from identity.matcher import PreparedProbe, ReferenceSet, score_matrix
from identity.ordinal import DEFAULT_ORDINAL_PARAMS, _bank
from identity.roi import extract_roi
from identity.template import Template

P = DEFAULT_FEATURE_PARAMS


@dataclass(frozen=True)
class Variant:
    """An affine warp of the work image: degrees CCW, translation as fractions of the side,
    scale about the centre."""

    angle: float = 0.0
    ty: float = 0.0
    tx: float = 0.0
    scale: float = 1.0


def _warp(img: npt.NDArray[np.float32], v: Variant, grid: int
          ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    h, w = img.shape
    if v == Variant():
        return img, np.ones((grid, grid), dtype=bool)
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), v.angle, v.scale)
    m[0, 2] += v.tx * w
    m[1, 2] += v.ty * h
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    cover = cv2.warpAffine(np.ones((h, w), np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                           borderValue=0.0)
    inside = cells.pool(np.asarray(cover, np.float32), grid) > 0.999
    return np.asarray(out, np.float32), np.asarray(inside, dtype=bool)


def code_variants(roi: npt.NDArray[np.uint8], variants: list[Variant]) -> Template:
    """CompCode + OrdinalCode of ``roi`` at each variant (the pipeline's coders)."""
    g = P.grid_size
    work = cv2.resize(roi, (P.work_size, P.work_size), interpolation=cv2.INTER_AREA)
    img = work.astype(np.float32)
    bank = gabor_bank(P)
    op = DEFAULT_ORDINAL_PARAMS
    owork = cv2.resize(roi, (op.work_size, op.work_size), interpolation=cv2.INTER_AREA)
    oimg = owork.astype(np.float32)
    obank = _bank(op, int(roi.shape[0]))
    codes, masks, ords = [], [], []
    for v in variants:
        warped, inside = _warp(img, v, g)
        resp = np.stack([cv2.filter2D(warped, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)
                         for k in bank])
        pooled = np.stack([cells.pool(r, g) for r in resp])
        codes.append(np.moveaxis(_ORIENTATION_BITS[np.argmin(pooled, axis=0)], -1, 0))
        std, mean = _local_stats(warped, P)
        masks.append(_validity(cells.pool(std, g), cells.pool(mean, g), P) & inside)
        owarped, _ = _warp(oimg, v, g)
        ords.append(np.stack([
            cv2.resize(cv2.filter2D(owarped, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT),
                       (g, g), interpolation=cv2.INTER_AREA) > 0.0 for k in obank]))
    return PalmCode(np.stack(codes), np.stack(masks), np.stack(ords)).to_template()


def variant_sets(scale_step: float) -> dict[str, list[Variant]]:
    base = [Variant(), Variant(angle=-4.5), Variant(angle=4.5)]
    half = 0.5 / P.grid_size  # half a cell, as a fraction of the side
    offsets = [(half, 0.0), (0.0, half), (half, half)]
    return {
        "base": base,
        "half": base + [Variant(ty=ty, tx=tx) for ty, tx in offsets],
        "half_all": base + [Variant(angle=a, ty=ty, tx=tx)
                            for a in (0.0, -4.5, 4.5) for ty, tx in offsets],
        "scale": base + [Variant(scale=1.0 - scale_step), Variant(scale=1.0 + scale_step)],
    }


def _rois(paths: list[Path]) -> list[npt.NDArray[np.uint8] | None]:
    out: list[npt.NDArray[np.uint8] | None] = []
    for p in paths:
        try:
            out.append(extract_roi(decode_image(p.read_bytes())).roi)
        except Exception:  # noqa: BLE001 - an FTA: left out of both sides, as evaluate does
            out.append(None)
    return out


def _score_chunk(args: tuple[list[Template], list[Template]]) -> npt.NDArray[np.float64]:
    probes, refs = args
    return score_matrix(probes, refs, fused=True)


def _c2f_chunk(args: tuple[list[Template], list[Template]]) -> npt.NDArray[np.float64]:
    """Coarse to fine (``half_all`` variants only): the best of the 3 base variants over
    all shifts, then the 3 half-cell offsets of the winning rotation at the 3 x 3 shifts
    around the winning shift; (2, N, M) scores: [exhaustive, coarse to fine]."""
    probes, refs = args
    rs = ReferenceSet.from_templates(refs, fused=True)
    n = 2 * params.MATCH_MAX_SHIFT + 1
    out = np.zeros((2, len(probes), len(refs)))
    for i, p in enumerate(probes):
        pp = PreparedProbe(p, fused=True)
        diff, valid, diff_ord = pp.counts(rs)
        num = pp.weight * diff.astype(np.float64) + (1.0 - pp.weight) * diff_ord
        frac = np.where(valid >= pp.min_valid_bits, num / np.maximum(valid, 1), np.inf)
        frac = frac.reshape(12, n, n, -1)
        out[0, i] = frac.min(axis=(0, 1, 2))
        base = frac[:3].reshape(3 * n * n, -1)
        best = base.argmin(axis=0)
        r, dy, dx = np.unravel_index(best, (3, n, n))
        c2f = base.min(axis=0)
        cols = np.arange(base.shape[1])
        for o in range(3):
            v = 3 + 3 * r + o
            for ey in (-1, 0, 1):
                for ex in (-1, 0, 1):
                    yy = np.clip(dy + ey, 0, n - 1)
                    xx = np.clip(dx + ex, 0, n - 1)
                    c2f = np.minimum(c2f, frac[v, yy, xx, cols])
        out[1, i] = c2f
    out[~np.isfinite(out)] = 1.0
    return np.clip(1.0 - 2.0 * out, 0.0, 1.0)


def _metrics(genuine: npt.NDArray[np.float64], impostor: npt.NDArray[np.float64]) -> dict:
    out = {"eer": ev.equal_error_rate(genuine, impostor),
           "genuine": int(genuine.size), "impostor": int(impostor.size)}
    for key, f in (("1e-3", 1e-3), ("1e-4", 1e-4), ("1e-5", 1e-5)):
        out[f"fnmr_at_fmr_{key}"] = (ev.fnmr_at_fmr(genuine, impostor, f)
                                     if impostor.size >= ev.min_impostors_for(f) else None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, help="palm set folder name under palm/")
    ap.add_argument("--identities", default=None, help="A:B, inclusive name range")
    ap.add_argument("--sets", default="base,half,half_all,scale")
    ap.add_argument("--scale-step", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    root = os.environ.get("STOREFRONT_DATA_DIR")
    if not root:
        print("STOREFRONT_DATA_DIR is not set", file=sys.stderr)
        return 2
    caps = read_manifest(Path(root) / "palm" / a.set)
    if a.identities:
        lo, hi = a.identities.split(":")
        caps = [c for c in caps if lo <= c.identity <= hi]
    sessions = sorted({c.session for c in caps})
    s1, s2 = sessions[0], sessions[1]
    caps = [c for c in caps if c.session in (s1, s2)]
    t0 = time.perf_counter()
    rois = _rois([c.path for c in caps])
    kept = [(c, r) for c, r in zip(caps, rois, strict=True) if r is not None]
    refs_caps = [(c, r) for c, r in kept if c.session == s1]
    probe_caps = [(c, r) for c, r in kept if c.session == s2]
    refs = [extract_features(r).to_template() for _, r in refs_caps]
    same = (np.array([c.identity for c, _ in probe_caps])[:, None]
            == np.array([c.identity for c, _ in refs_caps])[None, :])
    print(f"{len(kept)} of {len(caps)} acquired, {len(refs)} references, "
          f"{len(probe_caps)} probes ({time.perf_counter() - t0:.0f} s)", flush=True)
    results: dict[str, dict] = {}
    wanted = a.sets.split(",")
    all_sets = variant_sets(a.scale_step)
    for name in wanted:
        variants = all_sets[name]
        t1 = time.perf_counter()
        probes = [code_variants(r, variants) for _, r in probe_caps]
        if name == "base":  # the study's coder is the pipeline's, bit for bit
            for (_, r), t in list(zip(probe_caps, probes, strict=True))[:20]:
                if extract_features(r).to_template().rotations_only().to_bytes() != t.to_bytes():
                    raise SystemExit("base variants differ from extract_features")
        chunk = math.ceil(len(probes) / (4 * a.workers))
        parts = [(probes[i:i + chunk], refs) for i in range(0, len(probes), chunk)]
        if name == "half_all":
            with ProcessPoolExecutor(a.workers) as pool:
                both = np.concatenate(list(pool.map(_c2f_chunk, parts)), axis=1)
            scores = both[0]
            c2f = _metrics(both[1][same], both[1][~same])
            print("half_c2f", json.dumps(c2f), flush=True)
            results["half_c2f"] = c2f
        else:
            with ProcessPoolExecutor(a.workers) as pool:
                scores = np.vstack(list(pool.map(_score_chunk, parts)))
        m = _metrics(scores[same], scores[~same])
        m["variants"] = [v.__dict__ for v in variants]
        m["seconds"] = round(time.perf_counter() - t1, 1)
        results[name] = m
        print(name, json.dumps({k: v for k, v in m.items() if k != "variants"}), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"set": a.set, "identities": a.identities,
                                      "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
