"""Revocable templates on real palms: cross-key genuine scores vs impostor scores.

Usage: .venv/bin/python benchmarks/revocable_templates.py --palms DIR [--identities 100]
Gallery: each palm's first session-1 capture, stored transformed under key A. Probes:
each palm's first session-2 capture, transformed under key A (same key) or key B
(another key, i.e. after the key was revoked). Writes
benchmarks/results/revocable_templates.json: score summaries, two-sample
Kolmogorov-Smirnov distances with the 5 % critical value of the cross-key comparison
(c(0.05) = 1.358, asymptotic), and how many cross-key genuine scores reach the
identification threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from identity import params
from identity.evaluate_run import acquire, read_manifest
from identity.matcher import PreparedProbe, ReferenceSet
from identity.revocable import RevocableTransform


def _summary(x: np.ndarray) -> dict[str, float]:
    return {"n": int(x.size), "mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
            "p99": round(float(np.percentile(x, 99)), 4), "max": round(float(x.max()), 4)}


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / a.size
    fb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def main() -> None:
    """Measure and write the JSON report."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--palms", type=Path, required=True)
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "revocable_templates.json")
    args = ap.parse_args()
    caps = read_manifest(args.palms, limit_identities=args.identities)
    first: dict[tuple[str, str], object] = {}
    for c in sorted(caps, key=lambda c: (c.identity, c.session, c.capture)):
        first.setdefault((c.identity, c.session), c)
    acq = acquire(list(first.values()))  # type: ignore[arg-type]
    by = {(c.identity, c.session): t for c, t in zip(acq.captures, acq.templates, strict=True)}
    palms = sorted({i for i, s in by if (i, "1") in by and (i, "2") in by})
    key_a, key_b = RevocableTransform(b"A" * 31 + b"1"), RevocableTransform(b"B" * 31 + b"2")
    refs = ReferenceSet.from_templates([key_a.apply(by[(p, "1")]) for p in palms])
    same, cross = [], []
    for p in palms:
        same.append(PreparedProbe(by[(p, "2")], transform=key_a.bits).scores(refs))
        cross.append(PreparedProbe(by[(p, "2")], transform=key_b.bits).scores(refs))
    s, c = np.stack(same), np.stack(cross)
    own = np.eye(len(palms), dtype=bool)
    report = {
        "palms": len(palms), "keys": [key_a.key_id, key_b.key_id],
        "genuine_same_key": _summary(s[own]), "impostor_same_key": _summary(s[~own]),
        "genuine_cross_key": _summary(c[own]), "impostor_cross_key": _summary(c[~own]),
        "ks_cross_key_genuine_vs_cross_key_impostor": round(_ks(c[own], c[~own]), 4),
        "ks_critical_5pct_cross_key": round(1.358 * float(np.sqrt(
            (own.sum() + (~own).sum()) / (own.sum() * (~own).sum()))), 4),
        "ks_cross_key_genuine_vs_same_key_impostor": round(_ks(c[own], s[~own]), 4),
        "ks_same_key_genuine_vs_impostor": round(_ks(s[own], s[~own]), 4),
        "identify_threshold": params.IDENTIFY_THRESHOLD,
        "cross_key_genuine_at_or_above_threshold": int((c[own] >= params.IDENTIFY_THRESHOLD)
                                                       .sum()),
        "same_key_genuine_at_or_above_threshold": int((s[own] >= params.IDENTIFY_THRESHOLD)
                                                      .sum()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
