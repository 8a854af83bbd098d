"""Recognition on whole-hand sets split by identity: tuning half, held-out half, all.

The tuning discipline of the ROI work (benchmarks/README.md, "Palm recognition"): each
set's identities are sorted and split in two; ROI rules and constants are tuned, and
failures inspected, on the first half only; the second half is held out. This script
measures a set three ways with the same pipeline as ``storefront identity evaluate``
(:func:`identity.evaluate_run.evaluate_folder`, the data README's protocol): the
first half of the identities (``tuning``), the second half (``held_out``) and the
whole set (``all``). The halves are temporary manifests written to a temporary folder
(never into the repository) next to a symbolic link ``images`` to the set's folder, so
their paths stay inside their folder as the manifest format requires (no image is
copied).

Prints one line per set and part, and writes JSON with EER, FNMR at FMR 1e-3 / 1e-4 /
1e-5, rank-1, FTA, the comparison counts and the failures to acquire counted by reason.

Run (data in ``$STOREFRONT_DATA_DIR``)::

    python benchmarks/roi_halves.py --json benchmarks/results/roi_halves.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from identity.evaluate_run import evaluate_folder

SETS = ("polyu-ms-nir-hand", "coep-hand", "contactless-phone-hand", "nir-contactless-hand")
PARTS = ("tuning", "held_out", "all")


def split_identities(identities: set[str] | list[str]) -> tuple[list[str], list[str]]:
    """(first half, second half) of the identities in sorted order; the first half has
    ``len // 2`` of them (the smaller one when the count is odd).

    Raises:
        ValueError: fewer than two identities.
    """
    ordered = sorted(set(identities))
    if len(ordered) < 2:
        raise ValueError(f"need at least 2 identities to split, got {len(ordered)}")
    half = len(ordered) // 2
    return ordered[:half], ordered[half:]


def write_half(folder: Path, keep: list[str], out: Path) -> Path:
    """Write ``out/manifest.csv``: the rows of ``folder/manifest.csv`` whose identity is in
    ``keep``, with ``path`` under ``out/images``, a symbolic link to ``folder``; ``out``."""
    with (folder / "manifest.csv").open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = [row for row in reader if row["identity"] in set(keep)]
    out.mkdir(parents=True, exist_ok=True)
    link = out / "images"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(folder.resolve(), target_is_directory=True)
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "path": f"images/{row['path']}"})
    return out


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of an evaluation report kept here, and its failures to acquire
    counted by reason (the reason's words before any parenthesis)."""
    reasons = Counter(f["reason"].split(": ", 1)[-1].split(" (")[0] for f in report["failures"])
    keys = ("eer", "fnmr_at_fmr", "rank1", "fta", "fte", "genuine_comparisons",
            "impostor_comparisons", "identities", "images", "extract_ms_p50")
    return {**{k: report[k] for k in keys}, "failures_by_reason": dict(reasons)}


def measure_set(folder: Path, scratch: Path) -> dict[str, dict[str, Any]]:
    """``{"tuning": ..., "held_out": ..., "all": ...}`` summaries of one set folder."""
    with (folder / "manifest.csv").open(newline="", encoding="utf-8-sig") as handle:
        identities = {row["identity"] for row in csv.DictReader(handle)}
    tuning, held_out = split_identities(identities)
    folders = {
        "tuning": write_half(folder, tuning, scratch / folder.name / "tuning"),
        "held_out": write_half(folder, held_out, scratch / folder.name / "held_out"),
        "all": folder,
    }
    members = {"tuning": tuning, "held_out": held_out, "all": sorted(identities)}
    out = {}
    for part in PARTS:
        out[part] = summary(evaluate_folder(folders[part]).report)
        out[part]["identity_range"] = [members[part][0], members[part][-1]]
    return out


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.3f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="palm folder (default $STOREFRONT_DATA_DIR/palm)"
    )
    parser.add_argument("--sets", nargs="+", default=list(SETS), help="set names under --data")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    data = args.data or Path(os.environ.get("STOREFRONT_DATA_DIR", "")) / "palm"
    results: dict[str, Any] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="roi-halves-") as scratch:
        for name in args.sets:
            if not (data / name / "manifest.csv").is_file():
                print(f"{name}: not found under {data}, skipped")
                continue
            results[name] = measure_set(data / name, Path(scratch))
            for part in PARTS:
                entry = results[name][part]
                fnmr = entry["fnmr_at_fmr"]
                print(
                    f"{name:24s} {part:8s} EER {_percent(entry['eer']):>9s}  FNMR@1e-3 "
                    f"{_percent(fnmr['1e-3']):>9s}  rank-1 {_percent(entry['rank1']):>9s}  "
                    f"FTA {_percent(entry['fta'])} ({sum(entry['failures_by_reason'].values())}"
                    f"/{entry['images']})  {entry['genuine_comparisons']} / "
                    f"{entry['impostor_comparisons']} comparisons"
                )
    if args.json is not None:
        save_results(args.json, started, results)
    return 0


def save_results(path: Path, started: str, results: dict[str, Any]) -> None:
    """Write ``{"measured": started, "load_average": ..., "sets": results}`` to ``path``
    (indented JSON; its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"measured": started, "load_average": os.getloadavg(), "sets": results}
    path.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
