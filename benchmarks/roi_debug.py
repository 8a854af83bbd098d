"""Write every step of palm ROI extraction as PNG images, for looking at failures.

The images are those of ``DIR/manifest.csv``, read as ``storefront identity evaluate``
reads it (:func:`identity.evaluate_run.load_manifest`: the same checks and errors; a file
listed twice is shown once), or, when there is no manifest, every image file under
``DIR`` (sorted). Each file is read and acquired exactly
as the evaluation does (:func:`identity.imageio.read_image_file`, then
:func:`identity.evaluate_run.capture_roi`: the offline decoder, which shrinks large
photos and scales 16-bit data by its depth, then :func:`identity.roi.extract_roi`), with
a debug hook that saves each step's image ("input" = the decoded image the pipeline
sees, "blurred", "mask", "distance", "keypoints", "roi") as
``OUT/<n>-<image path, / and unsafe characters as _>__<k>_<step>.png``; ``<n>`` is the
image's number in the run (zero-padded), so two images never share a name and no name
starts with a dot. ``OUT/failures.csv`` lists every image that was not acquired
(number, path, ``fta`` with the reason, or ``unreadable``: a file that cannot be read,
counted apart as the evaluation counts it), and a summary is printed.

Exit code 0 after a run, 2 with the reason on a bad folder, manifest or ``--out`` (no
traceback; ``--out`` must lie outside the image folder, so nothing is written into the
data set) or when there is no image.

Run: ``python benchmarks/roi_debug.py /path/to/palm/coep-hand --out /tmp/roi-debug --limit 20``
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from identity.errors import AcquisitionError, InvalidImageError
from identity.evaluate_run import ManifestError, capture_roi, load_manifest
from identity.imageio import read_image_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
NAME_CHARS = 80
"""Longest part of an output name taken from the image's path (its end is kept)."""


class DebugError(Exception):
    """A bad folder, manifest or output folder: the message says why."""


@dataclass(frozen=True)
class Outcome:
    """One image's result: ``kind`` is "ok", "fta" or "unreadable"; ``reason`` why not ok."""

    kind: str
    reason: str = ""


def image_paths(folder: Path, out: Path | None = None) -> list[Path]:
    """The images of ``folder``: its manifest's rows (:func:`load_manifest`, duplicates
    dropped), else every image file under it except those under ``out``. Raises
    DebugError for a missing folder, a bad manifest or no image."""
    if not folder.is_dir():
        raise DebugError(f"{folder} is not a folder")
    if (folder / "manifest.csv").exists():
        try:
            return [c.path for c in load_manifest(folder).captures]
        except ManifestError as exc:
            raise DebugError(exc.reason) from None
    paths = _scan(folder, out)
    if not paths:
        raise DebugError(f"{folder} has no manifest.csv and no image file "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def _scan(folder: Path, out: Path | None) -> list[Path]:
    """Image files under ``folder`` (sorted), not descending into ``out``."""
    skip = out.resolve() if out is not None else None
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if (Path(root) / d).resolve() != skip]
        found += [Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def output_stem(number: int, width: int, relative: str) -> str:
    """``<number>-<relative>``: ``number`` zero-padded to ``width`` (unique per image),
    then the path with every character but letters, digits, ``.``, ``-`` and ``_`` as
    ``_`` (its last :data:`NAME_CHARS` characters)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", relative)[-NAME_CHARS:]
    return f"{number:0{width}d}-{safe}"


def debug_one(path: Path, stem: str, out: Path) -> Outcome:
    """Read and acquire one image as the evaluation does, saving its steps as
    ``out/<stem>__<k>_<step>.png``."""
    steps: list[tuple[str, NDArray[np.uint8]]] = []
    try:
        data = read_image_file(path)
    except OSError as error:
        return Outcome("unreadable", f"unreadable: {error.strerror or error}")
    except InvalidImageError as error:  # larger than the offline limit
        return Outcome("fta", f"{error.code}: {error.reason}")
    try:
        capture_roi(data, debug=lambda name, image: steps.append((name, image.copy())))
        outcome = Outcome("ok")
    except (InvalidImageError, AcquisitionError) as error:
        outcome = Outcome("fta", f"{error.code}: {error.reason}")
    for number, (name, image) in enumerate(steps):
        target = out / f"{stem}__{number}_{name}.png"
        if not cv2.imwrite(str(target), image):
            raise OSError(f"cannot write {target}")
    return outcome


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` as text (manifest paths always are)."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.as_posix()


def run(folder: Path, out: Path, limit: int | None) -> tuple[int, Counter[str], int]:
    """Debug the images of ``folder`` into ``out``; (images, FTA reasons, unreadable).
    Raises DebugError (bad input or ``out``) or OSError (writing ``out``)."""
    inside = out.resolve()
    if inside == folder.resolve():
        raise DebugError(f"--out {out} is the image folder itself")
    if inside.is_relative_to(folder.resolve()):
        raise DebugError(f"--out {out} is inside the image folder {folder}: the step images "
                         "and failures.csv would be written into the data set; choose a "
                         "folder outside it")
    if out.exists() and not out.is_dir():
        raise DebugError(f"--out {out} is not a folder")
    paths = image_paths(folder, out)[:limit]
    out.mkdir(parents=True, exist_ok=True)
    reasons: Counter[str] = Counter()
    unreadable = 0
    width = max(4, len(str(len(paths))))
    with (out / "failures.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "path", "result", "reason"])
        for number, path in enumerate(paths, start=1):
            relative = _relative(path, folder)
            outcome = debug_one(path, output_stem(number, width, relative), out)
            if outcome.kind != "ok":
                writer.writerow([number, relative, outcome.kind, outcome.reason])
            if outcome.kind == "fta":
                reasons[outcome.reason.split(" (")[0]] += 1
            unreadable += outcome.kind == "unreadable"
    return len(paths), reasons, unreadable


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("folder", type=Path, help="image set folder (manifest.csv or images)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the step images")
    parser.add_argument("--limit", type=_positive, default=None,
                        help="at most this many images")
    args = parser.parse_args(argv)
    try:
        images, reasons, unreadable = run(args.folder, args.out, args.limit)
    except (DebugError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = sum(reasons.values())
    print(f"{images} images: {images - failed - unreadable} acquired, {failed} failures to "
          f"acquire {dict(reasons)}, {unreadable} unreadable; steps in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
