"""ROI extraction speed per image on one core: ready ROIs (pass-through) and whole hands.

For each palm set under ``$STOREFRONT_DATA_DIR/palm`` (or ``--data``), up to
``--images`` images are decoded once (not timed), then :func:`identity.roi.extract_roi`
is timed on each, OpenCV limited to one thread (``cv2.setNumThreads(1)``). Failures to
acquire are timed too (they cost the same work). Prints and writes JSON with
milliseconds per image (p50, p95, mean) per set and the targets
(<= 10 ms per ROI image, <= 60 ms per whole-hand image).

Run (data in ``$STOREFRONT_DATA_DIR``)::

    python benchmarks/roi_speed.py --json benchmarks/results/roi_speed.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from identity.errors import AcquisitionError
from identity.roi import extract_roi

SETS = {
    "tongji-roi": "roi",
    "polyu-ms-roi-bands": "roi",
    "polyu-ms-nir-hand": "hand",
    "coep-hand": "hand",
    "contactless-phone-hand": "hand",
    "nir-contactless-hand": "hand",
}
TARGET_MS = {"roi": 10.0, "hand": 60.0}


def time_set(folder: Path, limit: int) -> dict[str, float | int | str]:
    """Milliseconds per ``extract_roi`` call on up to ``limit`` evenly spread images."""
    with (folder / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = rows[:: max(1, len(rows) // limit)][:limit]
    images = [cv2.imread(str(folder / row["path"]), cv2.IMREAD_GRAYSCALE) for row in rows]
    timings, failures = [], 0
    for image in images:
        start = time.perf_counter()
        try:
            extract_roi(np.ascontiguousarray(image))
        except AcquisitionError:
            failures += 1
        timings.append((time.perf_counter() - start) * 1000.0)
    timings.sort()
    return {
        "images": len(timings),
        "failures_to_acquire": failures,
        "ms_p50": round(statistics.median(timings), 2),
        "ms_p95": round(timings[int(0.95 * (len(timings) - 1))], 2),
        "ms_mean": round(statistics.fmean(timings), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="palm folder (default $STOREFRONT_DATA_DIR/palm)"
    )
    parser.add_argument("--images", type=int, default=200, help="images per set")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    data = args.data or Path(os.environ.get("STOREFRONT_DATA_DIR", "")) / "palm"
    cv2.setNumThreads(1)
    results: dict[str, dict[str, float | int | str]] = {}
    for name, kind in SETS.items():
        if not (data / name / "manifest.csv").is_file():
            print(f"{name}: not found under {data}, skipped")
            continue
        entry = time_set(data / name, args.images)
        entry.update(
            kind=kind, target_ms=TARGET_MS[kind], meets_target=entry["ms_p50"] <= TARGET_MS[kind]
        )
        results[name] = entry
        print(
            f"{name:24s} {kind:4s} p50 {entry['ms_p50']:6.2f} ms  p95 {entry['ms_p95']:6.2f} ms  "
            f"(target <= {TARGET_MS[kind]:.0f} ms, {entry['images']} images)"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": 1, "sets": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
