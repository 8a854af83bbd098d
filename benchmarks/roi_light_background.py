"""Recognition of whole hands moved onto a light background (paper), against the originals.

No real set here shows hands on a light background, so this script makes one: each
capture of a dark-background whole-hand set is laid onto flat light paper (grey level
``--paper``, with faint blurred noise) through a soft mask of the hand (the hand at the
outline level the pipeline itself uses, ``ROI_OUTLINE_LEVEL`` of the way from the
background mean up to Otsu's level of a Gaussian-blurred copy, its edge blurred by
1.5 px). The composed images go to a temporary folder (never into the repository) with a
manifest of the same identities and sessions, and both folders are evaluated with
:func:`identity.evaluate_run.evaluate_folder` (the protocol of ``storefront identity
evaluate``). The composite keeps the hand's own pixels, so what changes is the
background's polarity and its contrast with the skin: light skin on light paper is the
hard case. Nothing is tuned on this.

Run (data in ``$STOREFRONT_DATA_DIR``)::

    python benchmarks/roi_light_background.py --json benchmarks/results/roi_light_background.json
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from roi_halves import save_results, summary

from identity import params as P
from identity.errors import InvalidImageError
from identity.evaluate_run import evaluate_folder, load_manifest
from identity.imageio import decode_image_offline, read_image_file

SETS = ("coep-hand", "contactless-phone-hand", "nir-contactless-hand")


def on_paper(image: NDArray[np.uint8], paper_level: int, rng: np.random.Generator
             ) -> NDArray[np.uint8]:
    """``(H, W)`` ``uint8`` hand on a dark background -> the same hand on light paper.

    Args:
        image: grey image of a bright hand on a dark background.
        paper_level: the paper's mean grey level (0-255).
        rng: noise source for the paper's faint texture (std 6, blurred by 3 px).
    """
    blurred = cv2.GaussianBlur(image, (0, 0), 2.0)
    level, _ = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    below = blurred[blurred < level]
    background = float(below.mean()) if below.size else 0.0
    hand = (blurred > background + P.ROI_OUTLINE_LEVEL * (level - background)).astype(np.float32)
    alpha = cv2.GaussianBlur(hand, (0, 0), 1.5)
    noise = cv2.GaussianBlur(rng.normal(0.0, 6.0, image.shape), (0, 0), 3.0)
    paper = np.clip(paper_level + noise, 0, 255)
    composed = alpha * image.astype(np.float32) + (1.0 - alpha) * paper
    return np.clip(composed, 0, 255).astype(np.uint8)


def compose_set(folder: Path, out: Path, paper_level: int, seed: int) -> int:
    """Write every readable capture of ``folder`` on paper under ``out`` (PNG) with a
    manifest of the same rows; the number of images written."""
    rng = np.random.default_rng(seed)
    rows = []
    for capture in load_manifest(folder).captures:
        try:
            image = decode_image_offline(read_image_file(capture.path))
        except (OSError, InvalidImageError):
            continue
        relative = capture.path.relative_to(folder.resolve()).with_suffix(".png")
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / relative), on_paper(image, paper_level, rng))
        rows.append([relative.as_posix(), capture.identity, capture.session, capture.capture,
                     "composed on paper"])
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "session", "capture", "source"])
        writer.writerows(rows)
    return len(rows)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="palm folder (default $STOREFRONT_DATA_DIR/palm)")
    parser.add_argument("--sets", nargs="+", default=list(SETS), help="set names under --data")
    parser.add_argument("--paper", type=int, nargs="+", default=[228, 245],
                        help="paper grey levels (0-255)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if any(not 0 <= level <= 255 for level in args.paper):
        parser.error("--paper levels must lie in 0..255")
    data = args.data or Path(os.environ.get("STOREFRONT_DATA_DIR", "")) / "palm"
    results: dict[str, Any] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="roi-light-") as scratch:
        for name in args.sets:
            folder = data / name
            if not (folder / "manifest.csv").is_file():
                print(f"{name}: not found under {data}, skipped")
                continue
            entry = {"original": summary(evaluate_folder(folder).report)}
            for level in args.paper:
                out = Path(scratch) / f"{name}-{level}"
                compose_set(folder, out, level, args.seed)
                entry[f"paper_{level}"] = summary(evaluate_folder(out).report)
            results[name] = entry
            for part, measured in entry.items():
                print(f"{name:24s} {part:10s} EER {_percent(measured['eer']):>8s}  "
                      f"FTA {_percent(measured['fta']):>8s}  {measured['failures_by_reason']}")
    if args.json is not None:
        save_results(args.json, started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
