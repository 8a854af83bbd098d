"""ROI placement error on PolyU multispectral whole hands, against the official ROIs.

Ground truth: ``polyu-ms-roi-bands/nir/NNN/S_CC.png`` (the 128 x 128 ROIs published
with the PolyU multispectral palmprint database, cut with the tangent method of Zhang
et al., "Online palmprint identification", IEEE TPAMI 2003) are unrotated 1:1 crops of
the same captures as ``polyu-ms-nir-hand/0NNN/S_CC.jpg``; each is located in its raw
frame by template matching (normalised cross-correlation, ``cv2.TM_CCOEFF_NORMED``),
giving its centre, side (128 px) and orientation (fingers towards -x).

For each raw frame, :func:`identity.roi.extract_roi` (or ``--extractor
module:function`` returning the same :class:`identity.roi.RoiResult` fields) is run and
its ROI square compared with the official one: centre offset (px), side ratio (ours /
official), angle difference (degrees, the fingers' direction), and the NCC between our
ROI turned fingers-left (the official orientation) and the official ROI. Per image and
summary (median, share within 10 px / 10 degrees / 10 % scale). Failures to acquire
are counted. Seconds to run; a fast proxy of the EER of ``storefront identity
evaluate`` on ``polyu-ms-nir-hand``.

Run (data in ``$STOREFRONT_DATA_DIR``)::

    python benchmarks/roi_placement.py --json benchmarks/results/roi_placement.json
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from identity.errors import AcquisitionError

OFFICIAL_SIDE = 128.0  # px, official ROI side in the raw frame (scale 1.0)
OFFICIAL_FINGERS_DEG = 180.0  # fingers towards -x in the PolyU frames
MIN_GROUND_TRUTH_NCC = 0.5  # an official ROI matching worse is not used


def _extractor(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def ground_truth(raw: np.ndarray, official: np.ndarray) -> tuple[float, float, float]:
    """(centre x, centre y, NCC) of the official ROI located in the raw frame."""
    scores = cv2.matchTemplate(raw, official, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(scores)
    half = (OFFICIAL_SIDE - 1.0) / 2.0
    return x + half, y + half, float(best)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / max(math.sqrt((a * a).sum() * (b * b).sum()), 1e-9))


def _fingers_deg(angle_deg: float) -> float:
    """Fingers' direction in the frame (degrees, image x axis, counter-clockwise, y up).

    ``RoiResult.angle_deg`` is the counter-clockwise rotation that brought the fingers
    up (90 degrees), so the fingers pointed at 90 - angle in the frame.
    """
    return (90.0 - angle_deg) % 360.0


def measure(raw: np.ndarray, official: np.ndarray, extract: Callable[..., Any]) -> dict[str, Any]:
    """Placement of our ROI against the official one in one raw frame."""
    gx, gy, gt_ncc = ground_truth(raw, official)
    row: dict[str, Any] = {"ground_truth_ncc": round(gt_ncc, 3)}
    try:
        result = extract(raw)
    except AcquisitionError as error:
        row["fta"] = error.reason
        return row
    cx, cy = result.centre
    side = getattr(result, "side", None)
    turn = (_fingers_deg(result.angle_deg) - OFFICIAL_FINGERS_DEG + 180.0) % 360.0 - 180.0
    # Ours has the fingers up; a quarter turn counter-clockwise puts them left, as there.
    ours = np.rot90(result.roi, 1)
    row.update(
        offset_px=round(math.hypot(cx - gx, cy - gy), 2),
        dx_px=round(cx - gx, 2),
        dy_px=round(cy - gy, 2),
        side_ratio=None if side is None else round(side / OFFICIAL_SIDE, 3),
        angle_deg=round(turn, 2),
        ncc=round(_ncc(ours, official), 3),
    )
    return row


def _share(values: list[float], limit: float) -> float:
    return round(sum(1 for v in values if abs(v) <= limit) / max(len(values), 1), 3)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median errors and shares within 10 px / 10 degrees / 10 % scale."""
    placed = [r for r in rows if "offset_px" in r]
    offsets = [r["offset_px"] for r in placed]
    angles = [r["angle_deg"] for r in placed]
    ratios = [r["side_ratio"] for r in placed if r["side_ratio"] is not None]
    nccs = [r["ncc"] for r in placed]
    median = statistics.median
    return {
        "images": len(rows),
        "fta": len(rows) - len(placed),
        "median_offset_px": median(offsets) if offsets else None,
        "median_abs_angle_deg": median(abs(a) for a in angles) if angles else None,
        "median_side_ratio": median(ratios) if ratios else None,
        "median_ncc": median(nccs) if nccs else None,
        "within_10px": _share(offsets, 10.0),
        "within_10deg": _share(angles, 10.0),
        "within_10pct_scale": _share([math.log(r) / math.log(1.1) for r in ratios], 1.0),
        "all_three": round(
            sum(
                1
                for r in placed
                if r["offset_px"] <= 10
                and abs(r["angle_deg"]) <= 10
                and r["side_ratio"] is not None
                and abs(math.log(r["side_ratio"])) <= math.log(1.1)
            )
            / max(len(rows), 1),
            3,
        ),
    }


def pairs(data: Path, palms: int) -> list[tuple[str, Path, Path]]:
    """(name, raw frame, official NIR ROI) for the first ``palms`` PolyU palms."""
    bands = data / "palm" / "polyu-ms-roi-bands"
    hands = data / "palm" / "polyu-ms-nir-hand"
    with (bands / "manifest.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["path"].startswith("nir/")]
    found = []
    for row in rows:
        _, palm, name = row["path"].split("/")
        if int(palm) > palms:
            continue
        raw = hands / f"{int(palm):04d}" / Path(name).with_suffix(".jpg")
        if raw.is_file():
            found.append((f"{int(palm):04d}/{Path(name).stem}", raw, bands / row["path"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    data = os.environ.get("STOREFRONT_DATA_DIR", "")
    parser.add_argument("--data", type=Path, default=Path(data))
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--palms", type=int, default=10, help="first N palms (10 published)")
    parser.add_argument("--extractor", default="identity.roi:extract_roi")
    parser.add_argument("--quiet", action="store_true", help="summary only")
    args = parser.parse_args(argv)
    extract = _extractor(args.extractor)
    rows = []
    for name, raw_path, official_path in pairs(args.data, args.palms):
        raw = cv2.imread(str(raw_path), cv2.IMREAD_GRAYSCALE)
        official = cv2.imread(str(official_path), cv2.IMREAD_GRAYSCALE)
        row = measure(raw, official, extract)
        if row["ground_truth_ncc"] < MIN_GROUND_TRUTH_NCC:
            continue
        rows.append({"image": name, **row})
        if not args.quiet:
            print(json.dumps(rows[-1]))
    summary = summarise(rows)
    print(json.dumps({"extractor": args.extractor, **summary}, indent=1))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"extractor": args.extractor, "summary": summary, "images": rows}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
