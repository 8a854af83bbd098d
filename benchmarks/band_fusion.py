"""Score-level fusion of the green (print) and near-infrared (vein) bands of PolyU-MS ROIs.

Data: ``polyu-ms-roi-bands`` (``manifest.csv``: ``path,identity,session,capture,source``;
``capture`` is ``<band>_<number>``, e.g. ``green_01`` and ``nir_01``: the same number in
the same identity and session is one capture seen in the two bands). Each image goes
through the pipeline of ``storefront identity evaluate`` (decode -> ROI, which should
pass these 128x128 ROIs through -> CompCode template), and the shift-tolerant matcher
scores, per band, every session-1 capture against every session-2 capture (data README
protocol; genuine = same palm). Only captures acquired in both bands are compared, so
the two bands' scores are aligned pair by pair.

Fusion (:mod:`identity.fusion`): each band's scores are z-normalised with the mean and
std of its impostor scores on a training split, then summed (Kittler et al. 1998) or
maxed. Held-out evaluation: normalisation fitted on identities 1-5 (sorted), error rates
on identities 6-10 (comparisons among those only). Also on all 10 identities with the
normalisation fitted on all of them: optimistic, flagged as such. Reported per method:
EER, FNMR at FMR 1e-2 and 1e-3 (``null`` when there are fewer than 1/FMR impostor
comparisons), FMR and FNMR at the EER threshold; on the held-out split also at the
threshold that gave the EER on the training split. When every method separates the
classes completely (all rates 0), the scale-free separation tells them apart: Daugman's
decidability d' and the gap between the lowest genuine and the highest impostor score in
impostor standard deviations; the correlation of the bands' scores shows how much of
the two bands' information is shared.

Run (data in ``$STOREFRONT_DATA_DIR``)::

    python benchmarks/band_fusion.py --json benchmarks/results/band_fusion.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from identity import evaluation as ev
from identity import fusion
from identity.errors import AcquisitionError, InvalidImageError
from identity.evaluate_run import Capture, ManifestError, read_manifest
from identity.features import extract_features
from identity.imageio import decode_image
from identity.matcher import score_matrix
from identity.roi import extract_roi
from identity.template import Template

F64 = npt.NDArray[np.float64]
BANDS = ("green", "nir")
METHODS = ("green", "nir", "fused_sum", "fused_max")
FMR_TARGETS = {"1e-2": 1e-2, "1e-3": 1e-3}
TRAIN_IDENTITIES = 5
SET_NAME = "polyu-ms-roi-bands"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "band_fusion.json"
Key = tuple[str, str, str]  # (identity, session, capture number)


@dataclass
class Acquired:
    """Per band: templates by capture key, failures (path, reason), non-pass-through paths."""

    templates: dict[str, dict[Key, Template]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    not_passthrough: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Comparisons:
    """Aligned scores per band: ``genuine[band][n]`` and ``genuine[other][n]`` are one pair."""

    genuine: dict[str, F64]
    impostor: dict[str, F64]


def band_key(capture: Capture) -> tuple[str, Key]:
    """(band, (identity, session, number)) of a manifest row whose capture is ``band_NN``.

    Raises :class:`ManifestError` when the capture value names no known band.
    """
    band, _, number = capture.capture.partition("_")
    if band not in BANDS or not number:
        raise ManifestError(f"capture {capture.capture!r} of {capture.path} is not "
                            f"<band>_<number> with a band in {BANDS}")
    return band, (capture.identity, capture.session, number)


def acquire(folder: Path, captures: Sequence[Capture]) -> Acquired:
    """Templates of every capture, as ``storefront identity evaluate`` makes them.

    Paths in the failures and non-pass-through lists are relative to ``folder``.
    """
    out = Acquired(templates={band: {} for band in BANDS})
    for cap in captures:
        band, key = band_key(cap)
        rel = cap.path.relative_to(folder).as_posix()
        try:
            result = extract_roi(decode_image(cap.path.read_bytes()))
        except OSError as exc:
            out.failures.append({"path": rel, "reason": f"unreadable: {exc.strerror}"})
            continue
        except (InvalidImageError, AcquisitionError) as exc:
            out.failures.append({"path": rel, "reason": f"{exc.code}: {exc.reason}"})
            continue
        if not result.passthrough:
            out.not_passthrough.append(rel)
        out.templates[band][key] = extract_features(result.roi).to_template()
    return out


def compare(acq: Acquired, identities: set[str], sessions: tuple[str, str]) -> Comparisons:
    """Session-1 x session-2 scores per band, among ``identities``, on captures in both bands."""
    paired = set.intersection(*(set(acq.templates[b]) for b in BANDS))
    keys = sorted(k for k in paired if k[0] in identities)
    refs = [k for k in keys if k[1] == sessions[0]]
    probes = [k for k in keys if k[1] == sessions[1]]
    same = np.array([[p[0] == r[0] for r in refs] for p in probes], dtype=bool)
    genuine, impostor = {}, {}
    for band in BANDS:
        t = acq.templates[band]
        scores = score_matrix([t[k] for k in probes], [t[k] for k in refs], fused=False)
        genuine[band], impostor[band] = scores[same], scores[~same]
    return Comparisons(genuine, impostor)


def method_scores(c: Comparisons, norms: list[fusion.ZNorm]) -> dict[str, tuple[F64, F64]]:
    """(genuine, impostor) scores of each method; single bands keep their raw scores."""
    out = {band: (c.genuine[band], c.impostor[band]) for band in BANDS}
    for rule in ("sum", "max"):
        out[f"fused_{rule}"] = (
            fusion.fuse(norms, [c.genuine[b] for b in BANDS], rule),
            fusion.fuse(norms, [c.impostor[b] for b in BANDS], rule),
        )
    return out


def eer_threshold(genuine: F64, impostor: F64) -> float:
    """The threshold at which :func:`identity.evaluation.equal_error_rate` reads the EER."""
    curve = ev.det_curve(genuine, impostor)
    diff = curve.fnmr - curve.fmr
    k = int(np.searchsorted(diff, 0.0, side="left"))
    if k < diff.size and diff[k] == 0.0:
        return float(curve.thresholds[k])
    lo, hi = max(k - 1, 0), min(k, diff.size - 1)
    return float(curve.thresholds[lo if abs(diff[lo]) <= abs(diff[hi]) else hi])


def rates_at(genuine: F64, impostor: F64, threshold: float) -> dict[str, float]:
    """FMR and FNMR (fractions) with the match rule ``score >= threshold``."""
    return {"threshold": threshold, "fmr": float(np.mean(impostor >= threshold)),
            "fnmr": float(np.mean(genuine < threshold))}


def separation(genuine: F64, impostor: F64) -> dict[str, float]:
    """Scale-free separation, comparable across methods when the error rates are all 0.

    ``d_prime``: Daugman's decidability ``|mean_g - mean_i| / sqrt((var_g + var_i) / 2)``;
    ``margin_impostor_sd``: (lowest genuine - highest impostor score) / impostor std
    (> 0 when every genuine pair outscores every impostor pair).
    """
    spread = float(np.sqrt((genuine.var() + impostor.var()) / 2.0))
    return {"d_prime": float(abs(genuine.mean() - impostor.mean()) / spread),
            "margin_impostor_sd": float((genuine.min() - impostor.max()) / impostor.std())}


def metrics(genuine: F64, impostor: F64) -> dict[str, Any]:
    """EER, FNMR at the FMR targets, the rates at the EER threshold, the separation."""
    return {
        **separation(genuine, impostor),
        "eer": ev.equal_error_rate(genuine, impostor),
        "fnmr_at_fmr": {k: ev.fnmr_at_fmr(genuine, impostor, f) for k, f in FMR_TARGETS.items()},
        "at_eer_threshold": rates_at(genuine, impostor, eer_threshold(genuine, impostor)),
    }


def norm_json(norms: list[fusion.ZNorm]) -> dict[str, dict[str, float]]:
    """The fitted normalisation of each band."""
    return {band: {"impostor_mean": n.mean, "impostor_std": n.std}
            for band, n in zip(BANDS, norms, strict=True)}


def correlation(c: Comparisons) -> dict[str, float]:
    """Pearson correlation of the two bands' scores over the genuine and impostor pairs."""
    green, nir = BANDS
    return {kind: float(np.corrcoef(scores[green], scores[nir])[0, 1])
            for kind, scores in (("genuine", c.genuine), ("impostor", c.impostor))}


def evaluate(train: Comparisons, test: Comparisons, held_out: bool) -> dict[str, Any]:
    """Fit on ``train``'s impostors, measure every method on ``test``."""
    norms = fusion.fit_normalisers([train.impostor[b] for b in BANDS])
    tested, trained = method_scores(test, norms), method_scores(train, norms)
    out: dict[str, Any] = {}
    for name in METHODS:
        row = metrics(*tested[name])
        if held_out:
            cut = eer_threshold(*trained[name])
            row["at_training_eer_threshold"] = rates_at(*tested[name], cut)
        out[name] = row
    return {"normalisation": norm_json(norms), "band_correlation": correlation(test),
            "genuine_comparisons": int(test.genuine[BANDS[0]].size),
            "impostor_comparisons": int(test.impostor[BANDS[0]].size), "methods": out}


def run(folder: Path) -> dict[str, Any]:
    """The whole benchmark on a ``polyu-ms-roi-bands`` folder; JSON-ready report."""
    start = time.perf_counter()
    captures = read_manifest(folder)
    sessions = sorted({c.session for c in captures})
    if len(sessions) < 2:
        raise ManifestError(f"{folder} has one session; the protocol needs two")
    split = (sessions[0], sessions[1])
    acq = acquire(folder, [c for c in captures if c.session in split])
    ids = sorted({c.identity for c in captures})
    train_ids, test_ids = set(ids[:TRAIN_IDENTITIES]), set(ids[TRAIN_IDENTITIES:])
    train, test = compare(acq, train_ids, split), compare(acq, test_ids, split)
    everyone = compare(acq, set(ids), split)
    return {
        "set": folder.name, "protocol": f"session {split[0]} x session {split[1]}",
        "images": sum(c.session in split for c in captures),
        "paired_captures": len(set.intersection(*(set(acq.templates[b]) for b in BANDS))),
        "failures": acq.failures, "not_passthrough": acq.not_passthrough,
        "held_out": {"train_identities": sorted(train_ids), "test_identities": sorted(test_ids),
                     "optimistic": False, **evaluate(train, test, held_out=True)},
        "all": {"identities": ids, "optimistic": True,
                "note": "normalisation fitted on the same comparisons it is evaluated on",
                **evaluate(everyone, everyone, held_out=False)},
        "fnmr_at_fmr_note": "null = fewer impostor comparisons than 1/FMR, not resolvable",
        "seconds": round(time.perf_counter() - start, 2),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f} %"


def table(report: dict[str, Any]) -> str:
    """Plain-text table of the four methods on both evaluations."""
    head = (f"{'evaluation':<24} {'method':<10} {'EER':>8} {'FNMR@1e-2':>10} "
            f"{'FNMR@1e-3':>10} {'FMR@EERthr':>11} {'FNMR@EERthr':>12} {'d-prime':>8} "
            f"{'margin/sd':>9}")
    lines = [head, "-" * len(head)]
    for name, label in (("held_out", "ids 6-10 (fit on 1-5)"), ("all", "all 10 (optimistic)")):
        for method, row in report[name]["methods"].items():
            at = row["at_eer_threshold"]
            lines.append(f"{label:<24} {method:<10} {_pct(row['eer']):>8} "
                         f"{_pct(row['fnmr_at_fmr']['1e-2']):>10} "
                         f"{_pct(row['fnmr_at_fmr']['1e-3']):>10} "
                         f"{_pct(at['fmr']):>11} {_pct(at['fnmr']):>12} "
                         f"{row['d_prime']:>8.2f} {row['margin_impostor_sd']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write the JSON; 0 also when skipped (reason printed), 1 on error."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    data = os.environ.get("STOREFRONT_DATA_DIR", "")
    default = Path(data) / "palm" / SET_NAME if data else None
    parser.add_argument("--data", type=Path, default=default, help=f"the {SET_NAME} folder")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="write the results here")
    args = parser.parse_args(argv)
    if args.data is None or not (args.data / "manifest.csv").is_file():
        where = "STOREFRONT_DATA_DIR is not set" if args.data is None else (
            f"{args.data / 'manifest.csv'} does not exist")
        print(f"SKIPPED: {where} (the {SET_NAME} data set is needed)", file=sys.stderr)
        return 0
    try:
        report = run(args.data)
    except (ManifestError, fusion.FusionInputError, ev.MetricsInputError) as exc:
        print(f"band_fusion: {exc}", file=sys.stderr)
        return 1
    print(table(report))
    if report["failures"] or report["not_passthrough"]:
        print(f"failures: {report['failures']}\nnot passed through as ROIs: "
              f"{report['not_passthrough']}", file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
