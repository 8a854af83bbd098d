"""Seeded synthetic palmprint ROIs, for demos and tests on a machine without palm data.

Each synthetic palm is deterministic from ``(seed, palm)``: three principal lines
(heart, head and life lines as quadratic Bezier curves with random control points),
many secondary creases and wrinkles (short Bezier curves of random orientation, depth
and width) and band-limited skin texture. Each capture is deterministic from
``(seed, palm, capture)`` and applies a small rotation and shift, an illumination
gradient and gain, a slight blur and sensor noise, so that no two captures are equal.

This is a rendering for software testing, not a model of palm biology; the layout of
the principal lines loosely follows the usual palmistry atlas of a right palm, fingers up.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

ROI_SIDE = 128
"""Side of a synthetic capture (px); equal to ``params.ROI_SIZE``."""

_CANVAS = 160  # the palm is drawn larger than the ROI so captures can rotate and shift
_SUBPIXEL = 4  # cv2 drawing shift bits: points are given in 1/16 px

# (start, control, end) of the principal lines on the canvas, before random jitter (px).
_PRINCIPAL_LINES = (
    ((158.0, 42.0), (95.0, 20.0), (30.0, 38.0)),  # heart line
    ((8.0, 58.0), (70.0, 62.0), (140.0, 100.0)),  # head line
    ((12.0, 62.0), (55.0, 95.0), (70.0, 158.0)),  # life line
)


def _bezier(points: NDArray[np.float64], samples: int) -> NDArray[np.int32]:
    """Quadratic Bezier through control ``points`` (3, 2) px -> (samples, 2) fixed-point px."""
    t = np.linspace(0.0, 1.0, samples)[:, None]
    curve = (1 - t) ** 2 * points[0] + 2 * (1 - t) * t * points[1] + t**2 * points[2]
    fixed: NDArray[np.int32] = np.round(curve * (1 << _SUBPIXEL)).astype(np.int32)
    return fixed


def _draw(canvas: NDArray[np.uint8], points: NDArray[np.float64], depth: int, width: int) -> None:
    curve = _bezier(points, 24)
    cv2.polylines(canvas, [curve], False, depth, width, cv2.LINE_AA, _SUBPIXEL)


def _principal_lines(rng: np.random.Generator, canvas: NDArray[np.uint8]) -> None:
    for line in _PRINCIPAL_LINES:
        points = np.array(line) + rng.normal(0.0, 9.0, size=(3, 2))
        _draw(canvas, points, int(rng.integers(120, 200)), int(rng.integers(2, 4)))


def _creases(rng: np.random.Generator, canvas: NDArray[np.uint8]) -> None:
    """Secondary creases and wrinkles: short curves, some grouped in parallel families."""
    for _ in range(int(rng.integers(3, 6))):  # families of near-parallel wrinkles
        centre = rng.uniform(10, _CANVAS - 10, size=2)
        angle = rng.uniform(0, math.pi)
        spacing = rng.uniform(3.0, 6.0)
        for k in range(int(rng.integers(3, 7))):
            offset = (k - 2) * spacing * np.array([-math.sin(angle), math.cos(angle)])
            _crease(rng, canvas, centre + offset, angle + rng.normal(0, 0.1), (12, 30))
    for _ in range(int(rng.integers(60, 90))):
        centre = rng.uniform(0, _CANVAS, size=2)
        _crease(rng, canvas, centre, rng.uniform(0, math.pi), (6, 34))


def _crease(
    rng: np.random.Generator,
    canvas: NDArray[np.uint8],
    centre: NDArray[np.float64],
    angle: float,
    length_range: tuple[float, float],
) -> None:
    half = rng.uniform(*length_range) / 2.0
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-along[1], along[0]])
    bend = rng.normal(0.0, 0.15 * half)
    points = np.stack([centre - half * along, centre + bend * across, centre + half * along])
    _draw(canvas, points, int(rng.integers(35, 110)), int(rng.integers(1, 3)))


def _render_palm(seed: int, palm: int) -> NDArray[np.float32]:
    """The palm's ideal reflectance image, ``(_CANVAS, _CANVAS)`` ``float32``, grey levels."""
    rng = np.random.default_rng([seed, palm, 0])
    lines = np.zeros((_CANVAS, _CANVAS), np.uint8)
    _creases(rng, lines)
    _principal_lines(rng, lines)
    depth = cv2.GaussianBlur(lines.astype(np.float32), (0, 0), 0.8) * 0.45
    fine = cv2.GaussianBlur(rng.normal(0, 1, lines.shape).astype(np.float32), (0, 0), 1.2)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, lines.shape).astype(np.float32), (0, 0), 12.0)
    texture = 9.0 * fine / max(float(fine.std()), 1e-6) + 10.0 * coarse / max(
        float(coarse.std()), 1e-6
    )
    return (rng.uniform(140, 180) + texture - depth).astype(np.float32)


class SyntheticPalms:
    """A seeded population of synthetic palms, each of which can be captured many times.

    Args:
        seed: population seed; equal seeds give bit-identical palms and captures.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._palms: dict[int, NDArray[np.float32]] = {}

    def palm_image(self, palm: int) -> NDArray[np.float32]:
        """The ideal (capture-free) image of ``palm``: ``(160, 160)`` ``float32`` grey levels.

        Raises:
            ValueError: ``palm`` is negative.
        """
        if palm < 0:
            raise ValueError(f"palm index must be >= 0, got {palm}")
        if palm not in self._palms:
            self._palms[palm] = _render_palm(self.seed, palm)
        return self._palms[palm]

    def capture(self, palm: int, capture: int) -> NDArray[np.uint8]:
        """One capture of ``palm``: a ``(128, 128)`` ``uint8`` palm ROI, fingers up.

        The capture has a rotation of N(0, 2) degrees (clipped to +-4), a shift of
        N(0, 2) px per axis (clipped to +-5), a linear illumination gradient, a gain in
        [0.85, 1.15], a Gaussian blur with sigma in [0.4, 0.9] px and Gaussian sensor
        noise with sigma in [1.5, 3.5] grey levels.

        Raises:
            ValueError: ``palm`` or ``capture`` is negative.
        """
        if capture < 0:
            raise ValueError(f"capture index must be >= 0, got {capture}")
        ideal = self.palm_image(palm)
        rng = np.random.default_rng([self.seed, palm, capture + 1])
        angle = float(np.clip(rng.normal(0, 2.0), -4, 4))
        shift = np.clip(rng.normal(0, 2.0, size=2), -5, 5)
        matrix = cv2.getRotationMatrix2D((_CANVAS / 2, _CANVAS / 2), angle, 1.0)
        matrix[:, 2] = matrix[:, 2] + shift - (_CANVAS - ROI_SIDE) / 2
        image = cv2.warpAffine(
            ideal,
            matrix,
            (ROI_SIDE, ROI_SIDE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 0.9))
        ramp = np.linspace(-0.5, 0.5, ROI_SIDE, dtype=np.float32)
        gx, gy = rng.uniform(-0.25, 0.25, size=2)
        gradient = 1.0 + gx * ramp[None, :] + gy * ramp[:, None]
        image = image * gradient * rng.uniform(0.85, 1.15)
        noise = rng.normal(0, rng.uniform(1.5, 3.5), image.shape).astype(np.float32)
        result: NDArray[np.uint8] = np.clip(image + noise, 0, 255).astype(np.uint8)
        return result
