"""Palm-texture check of ROI pass-through: orientation coherence on real palms and on noise.

:func:`identity.roi_quality.orientation_coherence` (structure tensor, Bigun & Granlund
1987) is measured on every image of the real ROI sets (as given, and shrunk to 64 px
like a coarser unseen sensor), on the ROIs that the whole-hand path cuts from the
whole-hand sets (reported only: the check applies to pass-throughs), on the seeded
synthetic palms of the tests and the demo, and on made-up negatives (white and
smoothed noise, 1/f noise, ramps, checkerboards, stripes, text, smooth photo-like
images) at 64, 128 and 200 px. Each image also goes through
:func:`identity.roi.extract_roi`: the real ROIs must all pass through (no new failure
to acquire), and each negative's outcome (passed through, or the reason it failed) is
counted. The margin is the lowest real-ROI coherence against the highest of each
negative kind; the added time is that of one coherence call on a 128 px ROI.

Run (data in ``$STOREFRONT_DATA_DIR``, about 2 minutes)::

    python benchmarks/roi_texture.py --json benchmarks/results/roi_texture.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from identity import params as P
from identity.errors import AcquisitionError
from identity.roi import _analysis_copy, extract_roi
from identity.roi_quality import orientation_coherence
from identity.synthetic import SyntheticPalms

ROI_SETS = ("tongji-roi", "polyu-ms-roi-bands")
HAND_SETS = ("polyu-ms-nir-hand", "coep-hand", "contactless-phone-hand", "nir-contactless-hand")
# Seeds of SyntheticPalms used by the tests and the demo (plus 0..30 for the demo's --seed).
SYNTHETIC_SEEDS = sorted(set(range(31)) | {41, 77, 99, 777, 4242})
NEGATIVE_SIDES = (64, 128, 200)
NEGATIVE_SEEDS = range(10)
Image = NDArray[np.uint8]


def _read_set(folder: Path) -> Iterator[tuple[str, Image]]:
    with (folder / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        image = cv2.imread(str(folder / row["path"]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise SystemExit(f"unreadable {folder / row['path']}")
        yield row["path"], image


def _outcome(image: Image) -> str:
    """"pass-through", "whole hand" or the failure reason up to its parenthesis."""
    try:
        result = extract_roi(image)
    except AcquisitionError as error:
        return error.reason.split(" (")[0]
    return "pass-through" if result.passthrough else "whole hand"


def _coherence(image: Image) -> float | None:
    """Coherence of the analysis copy, as the pass-through check measures it."""
    small = _analysis_copy(image)
    return None if small is None else orientation_coherence(small)


def _summary(values: list[float]) -> dict[str, float | int]:
    data = np.array(values)
    return {
        "images": len(values),
        "min": round(float(data.min()), 4),
        "p1": round(float(np.percentile(data, 1)), 4),
        "p50": round(float(np.median(data)), 4),
        "max": round(float(data.max()), 4),
    }


def _measure(images: Iterator[Image], hand: bool = False) -> dict[str, object]:
    """Coherence summary and outcome counts; ``hand``: coherence of the extracted ROI."""
    values: list[float] = []
    outcomes: Counter[str] = Counter()
    for image in images:
        if hand:
            try:
                result = extract_roi(image)
            except AcquisitionError as error:
                outcomes[error.reason.split(" (")[0]] += 1
                continue
            outcomes["pass-through" if result.passthrough else "whole hand"] += 1
            values.append(orientation_coherence(result.roi.astype(np.float32)))
            continue
        outcomes[_outcome(image)] += 1
        value = _coherence(image)
        if value is not None:
            values.append(value)
    return {**_summary(values), "outcomes": dict(outcomes)}


def _shrunk(images: Iterator[Image], side: int) -> Iterator[Image]:
    for image in images:
        yield cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA).astype(np.uint8)


def _stretch(values: NDArray[np.floating], mean: float = 128.0, std: float = 40.0) -> Image:
    """Scale to the given mean and std (grey levels), clip, ``uint8``."""
    values = values.astype(np.float64)
    scaled = (values - values.mean()) / max(float(values.std()), 1e-9) * std + mean
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _text(rng: np.random.Generator, side: int, scale: float) -> Image:
    image = np.full((side, side), 230, np.uint8)
    letters = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    step = int(30 * scale) + 4
    for row in range(step, side + step, step):
        line = "".join(rng.choice(letters, 40))
        origin = (int(rng.integers(-10, 2)), row)
        cv2.putText(image, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 20, 1, cv2.LINE_AA)
    return image


def _power_law(rng: np.random.Generator, side: int, beta: float) -> Image:
    """Gaussian noise whose amplitude spectrum falls as 1 / f^beta."""
    fy, fx = np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    phases = rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))
    spectrum = phases / frequency**beta
    return _stretch(np.real(np.fft.ifft2(spectrum)))


def _stripes(side: int, period: float, degrees: float, square: bool) -> Image:
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    angle = np.radians(degrees)
    wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    return _stretch(np.sign(wave) if square else wave)


def negatives(seed: int, side: int) -> dict[str, Image]:
    """Made-up non-palm images of ``side`` px, by kind (deterministic from ``seed``)."""
    rng = np.random.default_rng([seed, side])
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    found: dict[str, Image] = {
        "uniform noise": rng.integers(0, 256, (side, side), dtype=np.uint8),
        "gaussian noise": _stretch(rng.normal(size=(side, side))),
    }
    for sigma in (1, 2, 3, 5, 8):
        noise = rng.integers(0, 256, (side, side)).astype(np.float32)
        blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
        found[f"uniform noise blurred sigma {sigma}"] = np.clip(blurred, 0, 255).astype(np.uint8)
        found[f"same, contrast stretched, sigma {sigma}"] = _stretch(blurred)
    for beta in (1.0, 1.5, 2.0):
        found[f"1/f^{beta:g} noise"] = _power_law(rng, side, beta)
    found["ramp"] = _stretch(x + y)
    found["ramp with noise"] = _stretch(x + rng.normal(0, 3, x.shape))
    for square in (2, 4, 8, 16, 32):
        found[f"checkerboard {square} px"] = _stretch((x // square + y // square) % 2)
    for period in (4, 8, 16):
        found[f"sine stripes period {period}"] = _stripes(side, period, 30.0, False)
        found[f"square stripes period {period}"] = _stripes(side, period, 0.0, True)
    for scale in (0.4, 0.7, 1.0):
        found[f"text scale {scale:g}"] = _text(rng, side, scale)
    blobs = cv2.GaussianBlur(rng.normal(size=(side, side)).astype(np.float32), (0, 0), side / 8)
    photo = _stretch(blobs).astype(np.float32) + rng.normal(0, 2, x.shape)
    found["smooth photo-like"] = np.clip(photo, 0, 255).astype(np.uint8)
    return found


def _negative_table() -> dict[str, dict[str, object]]:
    values: dict[str, list[float]] = {}
    outcomes: dict[str, Counter[str]] = {}
    for seed in NEGATIVE_SEEDS:
        for side in NEGATIVE_SIDES:
            for kind, image in negatives(seed, side).items():
                outcomes.setdefault(kind, Counter())[_outcome(image)] += 1
                value = _coherence(image)
                if value is not None:
                    values.setdefault(kind, []).append(value)
    return {
        kind: {**(_summary(values[kind]) if kind in values else {}), "outcomes": dict(counts)}
        for kind, counts in outcomes.items()
    }


def _synthetic() -> Iterator[Image]:
    for seed in SYNTHETIC_SEEDS:
        palms = SyntheticPalms(seed)
        for palm in range(8):
            for capture in range(6):
                yield palms.capture(palm, capture)


def _added_ms(folder: Path, count: int = 300) -> dict[str, float]:
    """Milliseconds per coherence call on ``count`` analysis copies (one thread)."""
    copies = [
        small
        for _, image in list(_read_set(folder))[:: max(1, 6000 // count)][:count]
        if (small := _analysis_copy(image)) is not None
    ]
    timings = []
    for small in copies:
        start = time.perf_counter()
        orientation_coherence(small)
        timings.append((time.perf_counter() - start) * 1000.0)
    return {"calls": len(timings), "ms_p50": round(statistics.median(timings), 3),
            "ms_mean": round(statistics.fmean(timings), 3)}


def _print_table(real: dict[str, dict[str, object]], negs: dict[str, dict[str, object]]) -> None:
    threshold = P.ROI_MIN_ORIENTATION_COHERENCE
    for name, entry in real.items():
        print(f"{name:36s} min {entry['min']:.3f}  p1 {entry['p1']:.3f}  p50 {entry['p50']:.3f}"
              f"  n={entry['images']:5d}  {entry['outcomes']}")
    print(f"threshold ROI_MIN_ORIENTATION_COHERENCE = {threshold}")
    for kind, entry in negs.items():
        top = entry.get("max")
        shown = f"max {top:.3f}" if isinstance(top, float) else "max   -  "
        print(f"{kind:36s} {shown}  {entry['outcomes']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="palm folder (default $STOREFRONT_DATA_DIR/palm)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    data = args.data or Path(os.environ.get("STOREFRONT_DATA_DIR", "")) / "palm"
    cv2.setNumThreads(1)
    real: dict[str, dict[str, object]] = {}
    sources: list[tuple[str, Callable[[], Iterator[Image]], bool]] = []
    for name in ROI_SETS:
        if not (data / name / "manifest.csv").is_file():
            print(f"{name}: not found under {data}, skipped")
            continue
        folder = data / name
        sources.append((name, lambda f=folder: (im for _, im in _read_set(f)), False))
        sources.append((f"{name} shrunk to 64 px",
                        lambda f=folder: _shrunk((im for _, im in _read_set(f)), 64), False))
    sources.append(("synthetic palms", _synthetic, False))
    for name in HAND_SETS:
        if (data / name / "manifest.csv").is_file():
            folder = data / name
            sources.append((f"{name} (whole-hand ROIs, not gated)",
                            lambda f=folder: (im for _, im in _read_set(f)), True))
    for name, images, hand in sources:
        real[name] = _measure(images(), hand)
    negs = _negative_table()
    _print_table(real, negs)
    timing = _added_ms(data / "tongji-roi") if (data / "tongji-roi").is_dir() else {}
    print(f"added time per pass-through ROI (one coherence call, 128 px): {timing}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"threshold": P.ROI_MIN_ORIENTATION_COHERENCE,
                  "sigma_px": P.ROI_COHERENCE_SIGMA, "real": real, "negatives": negs,
                  "added_time": timing}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
