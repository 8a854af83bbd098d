"""Decision threshold at N = 1M subjects for CompCode fused with OrdinalCode (issues 3, 4).

The study of ``benchmarks/threshold_at_scale.py`` (subject rules, log-linear tail fitted on
the tuning palms palm000-palm149 only, FPIR(N) ~ N FMR(t), FNIR on the held-out palms
palm150-palm299 at the threshold for FPIR 0.3 % at 1M), run on the score of the fusion
candidate that ``benchmarks/ordinal_fusion.py`` picked on the tuning palms (setting
``w128_s3x1_k2.5``, joint alignment, CompCode weight 0.6; nothing here is tuned). Every
session-2 capture (probe) is scored against every session-1 capture (gallery, 10
templates per palm) with the fused distance ``min over alignments of (0.6 d_comp +
0.4 d_ord) / valid`` (both codes share CompCode's validity mask, so one denominator), and,
for a paired comparison under the same code path, with CompCode alone. Since 2026-12-01 both
are the pipeline's own matcher (``identity.matcher``), so the fused score includes the
half-cell and sheared refinement of ``params.FEATURE_REFINE_OFFSETS_CELLS`` and
``params.FEATURE_REFINE_SHEARS``.

Run (data in ``$STOREFRONT_DATA_DIR``; about 6 min on 2 cores for the two score matrices,
cached in ``--cache``)::

    .venv/bin/python benchmarks/fused_threshold_at_scale.py \
        --json benchmarks/results/fused_threshold_at_scale.json
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import ordinal_fusion as of
import threshold_at_scale as tas
from bench_report import print_and_save

from identity import params
from identity.features import extract_features
from identity.matcher import PreparedProbe, ReferenceSet
from identity.template import Template

F32 = npt.NDArray[np.float32]
DEFAULT_JSON = Path(__file__).parent / "results" / "fused_threshold_at_scale.json"
DEFAULT_CACHE = Path("/tmp/fused_threshold_at_scale_scores.npz")
_SHARED: dict[str, Any] = {}


def _init(templates: list[Template], gallery: npt.NDArray[np.intp]) -> None:
    refs = [templates[i] for i in gallery]
    _SHARED.update(templates=templates, ref_c=ReferenceSet.from_templates(refs),
                   ref_f=ReferenceSet.from_templates(refs, fused=True))


def _score_rows(rows: list[int]) -> tuple[F32, F32]:
    """CompCode and fused scores of the probes at ``rows`` against the gallery: 2 x (P, M),
    with the pipeline's matcher (identity.matcher: the fused score refines with the
    probe's half-cell and sheared variants, CompCode alone uses its rotations)."""
    ref_c, ref_f = _SHARED["ref_c"], _SHARED["ref_f"]
    out_c = np.empty((len(rows), len(ref_c)), np.float32)
    out_f = np.empty_like(out_c)
    for n, row in enumerate(rows):
        probe = _SHARED["templates"][row]
        out_c[n] = PreparedProbe(probe).scores(ref_c)
        out_f[n] = PreparedProbe(probe, fused=True).scores(ref_f)
    return out_c, out_f


def score(palms: of.Palms, probes: npt.NDArray[np.intp], gallery: npt.NDArray[np.intp],
          workers: int) -> tuple[F32, F32]:
    """(P, M) CompCode and fused score matrices, probes x gallery captures."""
    templates = [extract_features(roi).to_template() for roi in palms.rois]
    chunks = [probes[i:i + 50].tolist() for i in range(0, len(probes), 50)]
    with ProcessPoolExecutor(workers, initializer=_init,
                             initargs=(templates, gallery)) as pool:
        parts = list(pool.map(_score_rows, chunks))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _key(palms: of.Palms) -> str:
    h = hashlib.sha256(palms.rois.tobytes())
    h.update(repr(("pipeline matcher", params.FUSION_WEIGHT_COMPCODE, params.MATCH_MAX_SHIFT,
                   params.MATCH_MIN_OVERLAP, params.FEATURE_ROTATIONS_DEG,
                   params.FEATURE_REFINE_OFFSETS_CELLS, params.FEATURE_REFINE_SHEARS,
                   params.FEATURE_GRID_SIZE, params.FEATURE_WORK_SIZE,
                   params.ORDINAL_WORK_SIZE)).encode())
    return h.hexdigest()


def studies(folder: Path, cache: Path | None, workers: int) -> dict[str, tas.Study]:
    """The CompCode and fused studies of ``folder`` (threshold_at_scale's Study shape)."""
    palms = of.load(folder)
    sess = np.asarray(palms.session)
    probes, gallery = np.flatnonzero(sess == 2), np.flatnonzero(sess == 1)
    key = _key(palms)
    mats = None
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        if str(stored["key"]) == key:
            mats = stored["comp"], stored["fused"]
    if mats is None:
        mats = score(palms, probes, gallery, workers)
        if cache is not None:
            np.savez(cache, key=np.array(key), comp=mats[0], fused=mats[1])
    ids = np.asarray(palms.identity)
    first = np.zeros(len(probes), bool)
    _, at = np.unique(ids[probes], return_index=True)
    first[at] = True

    def templates(rows: npt.NDArray[np.intp]) -> list[Template]:
        return [Template.from_bits(palms.comp[r], palms.mask[r]) for r in rows]

    prb, gal = templates(probes), templates(gallery)
    failures = [(f, "") for f in palms.failures]
    return {name: tas.Study(m, ids[probes].tolist(), ids[gallery].tolist(), first, prb, gal,
                            failures) for name, m in (("compcode", mats[0]), ("fused", mats[1]))}


def main(argv: list[str] | None = None) -> int:
    """Run both studies, print their tables, save the JSON; 0 also when skipped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    data = os.environ.get("STOREFRONT_DATA_DIR", "")
    parser.add_argument("--palms", type=Path,
                        default=Path(data) / "palm" / tas.SET_NAME if data else None)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tuning-palms", type=int, default=150)
    parser.add_argument("--gallery-subjects", type=int, default=1_000_000)
    parser.add_argument("--target-fpir", type=float, default=params.TARGET_FPIR)
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args(argv)
    if args.palms is None or not (args.palms / "manifest.csv").is_file():
        print(f"SKIPPED: the {tas.SET_NAME} data set is needed ($STOREFRONT_DATA_DIR)",
              file=sys.stderr)
        return 0
    report: dict[str, Any] = {"candidate": {
        "ordinal": "identity.ordinal defaults (w128_s3x1_k2.5)",
        "w_comp": params.FUSION_WEIGHT_COMPCODE, "mode": "joint",
        "refine_offsets_cells": params.FEATURE_REFINE_OFFSETS_CELLS,
        "refine_shears": params.FEATURE_REFINE_SHEARS}}
    for name, study in studies(args.palms, args.cache, args.workers).items():
        report[name] = tas.run(args, study)
        print(name)
        print(tas.table(report[name]))
    print_and_save(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
