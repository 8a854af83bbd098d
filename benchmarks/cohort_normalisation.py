"""Study: does cohort score normalisation lower FNIR at the 1M-subject threshold? (issue 4)

Not used by the service: measured on 2026-11-30 and not adopted (benchmarks/README.md,
"Cohort score normalisation": the normalised impostor tail of the held-out palms is
heavier than the tuning fit predicts).

Cohort normalisation (Aggarwal, Ratha & Bolle, "Biometric verification: looking beyond raw
similarity scores", CVPR Workshops 2006; the T-norm family of Auckenthaler et al., Digital
Signal Processing 10, 2000): a probe's subject score is reduced by an offset measured on a
fixed cohort of persons outside the gallery, the mean of the probe's ``--top-k`` best
scores against the cohort's templates. A probe with strong, common line patterns scores
high against everyone, impostors included; the offset takes that out. Ranking is unchanged
(the offset is the same for every subject of one probe); only the decision threshold
becomes probe-specific.

Protocol (``manifest.csv``: ``path,identity,session,capture,source``; two sessions):
identities sorted; the first half are tuning identities, the second half held out (for
``tongji-roi``: palm000-palm149 / palm150-palm299, as in ``identity/params.py``). Within
the tuning half, the first two thirds form the gallery and give the probes, the last third
is the cohort (its first session-1 capture each). Gallery subjects hold their session-1
captures (max rule over them, as the service); probes are all session-2 captures. For raw
and normalised subject scores alike, the impostor tail of the tuning gallery is fitted
with :func:`identity.decision.fit_fmr_tail` and the threshold for ``--fpir`` at N
subjects comes from :func:`identity.decision.threshold_for_fpir` (one comparison per
subject; the method of ``benchmarks/threshold_at_scale.py``); 90 % intervals from a
bootstrap over tuning probe palms; ``tail_slope`` / ``tail_intercept`` give the fit as
``log10 FMR(t) = slope * t + intercept`` on the unshifted scores. FNIR (mated subject
below the threshold) is then counted on the tuning gallery and on the held-out half
(gallery = held-out identities, same cohort); and, as a check of FPIR, the held-out
impostors' own tail fit: the threshold it gives and the FPIR it predicts at the tuning
threshold. Normalised scores are shifted by +0.5 for the fit (the fit's grid is [0, 1]).

Run (data in ``$STOREFRONT_DATA_DIR``; ~3 min on one core)::

    .venv/bin/python benchmarks/cohort_normalisation.py \
        --json benchmarks/results/cohort_normalisation.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from bench_report import palm_set_folder

from identity import params
from identity.decision import fit_fmr_tail, fpir, threshold_for_fpir
from identity.errors import IdentityError
from identity.matcher import PreparedProbe, ReferenceSet
from identity.service import template_from_image
from identity.template import Template

SHIFT = 0.5  # normalised scores lie in about [-0.4, 0.6]; the tail fit's grid is [0, 1]
GALLERIES = (10**4, 10**5, 10**6)


def _load(folder: Path) -> dict[str, dict[int, list[Template]]]:
    """identity -> session -> templates (captures that fail to acquire are skipped)."""
    out: dict[str, dict[int, list[Template]]] = {}
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        try:
            template = template_from_image((folder / row["path"]).read_bytes())
        except IdentityError:
            continue
        sessions = out.setdefault(row["identity"], {})
        sessions.setdefault(int(row["session"]), []).append(template)
    return out


def _scores(data: dict[str, dict[int, list[Template]]], gallery: list[str],
            cohort: ReferenceSet, top_k: int) -> dict[str, np.ndarray]:
    """Genuine / impostor subject scores, raw and normalised, per probe palm."""
    refs = [(i, t) for i in gallery for t in data[i][min(data[i])]]
    ref_set = ReferenceSet.from_templates([t for _, t in refs])
    owner = np.array([gallery.index(i) for i, _ in refs])
    genuine, impostor, offsets, palm = [], [], [], []
    for j, ident in enumerate(gallery):
        probes = [t for s, ts in data[ident].items() if s != min(data[ident]) for t in ts]
        for probe in probes:
            prepared = PreparedProbe(probe)
            subject = np.full(len(gallery), -1.0)
            np.maximum.at(subject, owner, prepared.scores(ref_set))
            offsets.append(float(np.sort(prepared.scores(cohort))[-top_k:].mean()))
            genuine.append(subject[j])
            impostor.append(np.delete(subject, j))
            palm.append(j)
    return {"genuine": np.array(genuine), "impostor": np.array(impostor),
            "offset": np.array(offsets), "palm": np.array(palm)}


def _threshold(impostor: np.ndarray, n: int, fpir: float, shift: float) -> float:
    slope, intercept = fit_fmr_tail(impostor.ravel() + shift)
    return threshold_for_fpir(fpir, n, 1, slope, intercept) - shift


def fpir_at(impostor: np.ndarray, threshold: float, n: int, shift: float) -> float:
    """FPIR at ``n`` subjects predicted at ``threshold`` by the tail fitted to ``impostor``."""
    slope, intercept = fit_fmr_tail(impostor.ravel() + shift)
    return fpir(threshold + shift, n, 1, slope, intercept)


def _study(tune: dict[str, np.ndarray], held: dict[str, np.ndarray], fpir: float,
           boots: int, seed: int, floor: float) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    palms = np.unique(tune["palm"])
    out: dict[str, object] = {}
    for kind in ("raw", "normalised"):
        off_t = tune["offset"] if kind == "normalised" else 0.0 * tune["offset"]
        off_h = held["offset"] if kind == "normalised" else 0.0 * held["offset"]
        shift = SHIFT if kind == "normalised" else 0.0
        imp_t = tune["impostor"] - np.asarray(off_t)[:, None]
        gen_t, gen_h = tune["genuine"] - off_t, held["genuine"] - off_h
        imp_h = held["impostor"] - np.asarray(off_h)[:, None]
        slope, intercept = fit_fmr_tail(imp_t.ravel() + shift)
        rows: dict[str, object] = {"tail_slope": round(slope, 3),
                                   "tail_intercept": round(intercept + slope * shift, 3)}
        for n in GALLERIES:
            t = _threshold(imp_t, n, fpir, shift)
            boot = []
            for _ in range(boots):
                pick = rng.choice(palms, size=len(palms), replace=True)
                sel = np.concatenate([np.flatnonzero(tune["palm"] == p) for p in pick])
                boot.append(_threshold(imp_t[sel], n, fpir, shift))
            rows[str(n)] = {
                "threshold": round(t, 4),
                "threshold_90": [round(float(q), 4) for q in np.quantile(boot, [0.05, 0.95])],
                "fnir_tuning": round(float(np.mean(gen_t < t)), 4),
                "fnir_held_out": round(float(np.mean(gen_h < t)), 4),
                "fnir_held_out_at_90_bounds": [round(float(np.mean(gen_h < q)), 4)
                                               for q in np.quantile(boot, [0.05, 0.95])],
                # with the raw floor as well (how a service would have to apply it)
                "fnir_held_out_with_raw_floor": round(float(np.mean(
                    (gen_h < t) | (held["genuine"] < floor))), 4),
                # FPIR check on held-out impostors: the threshold their own tail gives,
                # and the FPIR at N that tail predicts at the tuning threshold
                "threshold_held_out_fit": round(_threshold(imp_h, n, fpir, shift), 4),
                "fpir_at_threshold_by_held_out_fit": round(fpir_at(imp_h, t, n, shift), 5),
            }
        out[kind] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--palms", type=Path, default=None,
                        help="palm folder (default $STOREFRONT_DATA_DIR/palm/tongji-roi)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--fpir", type=float, default=0.003)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = palm_set_folder(args.palms, "tongji-roi")
    started = time.perf_counter()
    data = {i: s for i, s in _load(folder).items() if len(s) >= 2}
    ids = sorted(data)
    tuning, held_out = ids[: len(ids) // 2], ids[len(ids) // 2:]
    cut = (2 * len(tuning)) // 3
    gallery, cohort_ids = tuning[:cut], tuning[cut:]
    if len(gallery) < 20 or len(cohort_ids) < args.top_k:
        print("error: too few two-session identities for this protocol", file=sys.stderr)
        return 2
    cohort = ReferenceSet.from_templates([data[i][min(data[i])][0] for i in cohort_ids])
    tune = _scores(data, gallery, cohort, args.top_k)
    held = _scores(data, held_out, cohort, args.top_k)
    report = {
        "palms": str(folder), "gallery_identities": len(gallery),
        "cohort_identities": len(cohort_ids), "held_out_identities": len(held_out),
        "top_k": args.top_k, "target_fpir": args.fpir,
        "tuning_probes": int(tune["genuine"].size), "held_out_probes": int(held["genuine"].size),
        "tuning_impostor_subject_comparisons": int(tune["impostor"].size),
        "raw_floor": params.IDENTIFY_THRESHOLD,
        **_study(tune, held, args.fpir, args.bootstrap, args.seed, params.IDENTIFY_THRESHOLD),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
