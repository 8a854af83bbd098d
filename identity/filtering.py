"""Correlation of a work image with a bank of filters through the discrete Fourier transform.

Both coders filter a small square work image (64 px for CompCode, 128 px for OrdinalCode)
with several kernels of 15-17 px. Doing that directly (``cv2.filter2D``: about 4,700
multiply-adds per pixel for three 17 x 17 kernels) cost half of a template's extraction;
here the padded image is transformed once, multiplied by each kernel's precomputed
spectrum and transformed back (convolution theorem; e.g. Gonzalez & Woods, *Digital Image
Processing*, 4th ed., section 4.6), about three times faster for these sizes.

The result is the correlation ``cv2.filter2D`` computes with ``cv2.BORDER_REFLECT`` and
the kernel's centre as anchor: the image is padded by the kernel's half side with the
same reflected border, then zero-padded to a fast DFT size, so the circular correlation
never wraps into the output. The values differ from ``cv2.filter2D``'s only by float32
rounding (about 1e-6 of the response's range); a code bit can differ where two responses
(or a response and zero) are that close. ``tests/unit/identity/test_filtering.py`` checks
it against ``cv2.filter2D``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class SpectralBank:
    """A bank of K odd square float32 kernels prepared for ``(size, size)`` images.

    ``kernels``: K arrays of shape ``(k, k)``, ``k`` odd and the same for all (filter2D's
    correlation kernels, anchor at the centre); ``size``: side of the images in px.
    Raises ValueError for an empty bank, kernels of different or even sides or not 2-D,
    or ``size <= 0``. The spectra are computed once here (float32, OpenCV's packed CCS
    layout); :meth:`correlate` is then safe to call from several threads.
    """

    def __init__(self, kernels: Sequence[npt.NDArray[np.floating]], size: int) -> None:
        if not kernels or size <= 0:
            raise ValueError(f"need at least one kernel and a positive size, got"
                             f" {len(kernels)} kernels, size {size}")
        side = kernels[0].shape
        if any(k.ndim != 2 or k.shape != side for k in kernels) or side[0] != side[1] \
                or side[0] % 2 == 0:
            raise ValueError(f"kernels must be odd squares of one side, got"
                             f" {[k.shape for k in kernels]}")
        self.size = size
        self.half = side[0] // 2
        self.dft_size = cv2.getOptimalDFTSize(size + 2 * self.half)
        self._spectra = [self._spectrum(np.asarray(k, np.float32)) for k in kernels]

    def _spectrum(self, kernel: F32) -> F32:
        """DFT of ``kernel`` zero-padded to ``(dft_size, dft_size)``, packed CCS float32."""
        padded = np.zeros((self.dft_size, self.dft_size), np.float32)
        padded[: kernel.shape[0], : kernel.shape[1]] = kernel
        return np.asarray(cv2.dft(padded), np.float32)

    def correlate(self, img: F32) -> F32:
        """Each kernel correlated with ``img`` (float32 ``(size, size)``), reflected border:
        float32 ``(K, size, size)``, ``cv2.filter2D(img, cv2.CV_32F, kernel,
        borderType=cv2.BORDER_REFLECT)`` for each kernel up to float32 rounding. Raises
        ValueError for an image of another shape or dtype."""
        if img.shape != (self.size, self.size) or img.dtype != np.float32:
            raise ValueError(f"expected a float32 ({self.size}, {self.size}) image,"
                             f" got {img.dtype} {img.shape}")
        h, n = self.half, self.dft_size
        padded = np.zeros((n, n), np.float32)
        padded[: self.size + 2 * h, : self.size + 2 * h] = cv2.copyMakeBorder(
            img, h, h, h, h, cv2.BORDER_REFLECT)
        image_spectrum = cv2.dft(padded, nonzeroRows=self.size + 2 * h)
        out = np.empty((len(self._spectra), self.size, self.size), np.float32)
        for j, spectrum in enumerate(self._spectra):
            product = cv2.mulSpectrums(image_spectrum, spectrum, 0, conjB=True)
            full = cv2.dft(product, flags=cv2.DFT_INVERSE | cv2.DFT_SCALE
                           | cv2.DFT_REAL_OUTPUT, nonzeroRows=self.size)
            out[j] = full[: self.size, : self.size]
        return out
