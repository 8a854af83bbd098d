"""Revocable (cancelable) CompCode templates: a keyed, distance-preserving transform.

Cancelable biometrics (Ratha, Connell & Bolle, IBM Systems Journal 2001): store a
keyed transform of the template, so that a leaked template can be revoked by
changing the key. Here the transform of a (3, H, W) code and (H, W) mask is

* a secret permutation of the H*W cells, the same for the three bit planes and the
  mask (so the mask stays one bit per cell), then
* XOR of the 3*H*W code bits with a secret bit string.

Both are bijections on bit positions/values, so the Hamming distance between two
templates transformed under the *same* key equals their distance in the clear, and
the fraction of jointly valid bits is unchanged. The transform does not commute with
cell translations, so a probe is translated in the clear and each translation is then
transformed (:class:`identity.matcher.PreparedProbe` ``transform=``): matching scores
under one key equal the clear scores exactly. Under different keys the permuted,
masked bits are unrelated, so genuine scores fall to the impostor distribution
(benchmarks/revocable_templates.py shows it on Tongji). The key material is expanded
with SHAKE-256 (FIPS 202): the permutation is the argsort of H*W 64-bit words.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from identity.template import BITS_PER_CELL, Template

_LABEL = b"storefront/revocable-compcode/v1\x00"
Bits = npt.NDArray[np.bool_]


class RevocableTransform:
    """The keyed transform of one key for ``grid`` = (H, W) cells (``key``: >= 16 bytes).

    Raises ValueError on a shorter key.
    """

    def __init__(self, key: bytes, grid: tuple[int, int] = (32, 32)) -> None:
        if len(key) < 16:
            raise ValueError("a revocable-template key needs at least 16 bytes")
        self.grid = grid
        cells = grid[0] * grid[1]
        stream = hashlib.shake_256(_LABEL + key).digest(8 * cells + BITS_PER_CELL * cells // 8)
        words = np.frombuffer(stream[: 8 * cells], dtype=">u8")
        self._perm = np.argsort(words, kind="stable")
        xor = np.unpackbits(np.frombuffer(stream[8 * cells :], np.uint8))
        self._xor = xor.astype(bool).reshape(BITS_PER_CELL, cells)
        self.key_id = "rk-" + hashlib.sha256(b"rk-id\x00" + key).hexdigest()[:16]

    def bits(self, code: Bits, mask: Bits) -> tuple[Bits, Bits]:
        """Transform one (3, H, W) code and (H, W) mask (bool); returns the same shapes."""
        h, w = self.grid
        flat = code.reshape(BITS_PER_CELL, h * w)[:, self._perm] ^ self._xor
        return flat.reshape(BITS_PER_CELL, h, w), mask.reshape(h * w)[self._perm].reshape(h, w)

    def apply(self, template: Template) -> Template:
        """Every rotation variant of ``template`` transformed (a reference for matching).

        Raises ValueError on another grid.
        """
        if template.grid != self.grid:
            raise ValueError(f"template grid {template.grid} != transform grid {self.grid}")
        pairs = [self.bits(template.code_bits(r), template.mask_bits(r))
                 for r in range(template.variants)]
        return Template.from_bits(np.stack([c for c, _ in pairs]), np.stack([m for _, m in pairs]))
