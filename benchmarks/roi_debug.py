"""Write every step of palm ROI extraction as PNG images, for looking at failures.

For each image of ``DIR/manifest.csv`` (or every image file under ``DIR`` when there is
no manifest), :func:`identity.roi.extract_roi` runs with a debug hook that saves each
step's image ("input", "blurred", "mask", "distance", "keypoints", "roi") as
``FOLDER/<image path with / replaced by _>__<n>_<step>.png``; a failure to acquire
is written to ``FOLDER/failures.csv`` with its reason, and a summary is printed.

Run: ``python benchmarks/roi_debug.py /path/to/palm/coep-hand --out /tmp/roi-debug --limit 20``
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from identity.errors import AcquisitionError
from identity.roi import extract_roi

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def image_paths(folder: Path) -> list[Path]:
    """Images listed in ``folder/manifest.csv`` (column ``path``), else all image files."""
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="") as handle:
            return [folder / row["path"] for row in csv.DictReader(handle)]
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def debug_one(path: Path, root: Path, out: Path) -> str | None:
    """Run the extractor on one image, saving its steps; the FTA reason or None."""
    stem = str(path.relative_to(root).with_suffix("")).replace("/", "_")
    steps: list[tuple[str, NDArray[np.uint8]]] = []
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return "unreadable file"
    try:
        extract_roi(gray, debug=lambda name, image: steps.append((name, image.copy())))
        reason = None
    except AcquisitionError as error:
        reason = error.reason
    for number, (name, image) in enumerate(steps):
        cv2.imwrite(str(out / f"{stem}__{number}_{name}.png"), image)
    return reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", type=Path, help="image set folder (manifest.csv or images)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the step images")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images")
    args = parser.parse_args(argv)
    paths = image_paths(args.folder)[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    reasons: Counter[str] = Counter()
    with (args.out / "failures.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        for path in paths:
            reason = debug_one(path, args.folder, args.out)
            if reason is not None:
                writer.writerow([str(path.relative_to(args.folder)), reason])
                reasons[reason.split(" (")[0]] += 1
    failed = sum(reasons.values())
    print(f"{len(paths)} images, {failed} failures to acquire {dict(reasons)}; steps in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
