"""Revocable templates: same key preserves every score, another key destroys it."""

from __future__ import annotations

import numpy as np
import pytest

from identity.matcher import PreparedProbe, ReferenceSet, hamming_distance
from identity.revocable import RevocableTransform
from identity.template import Template


def _pair(seed: int) -> tuple[Template, Template]:
    rng = np.random.default_rng(seed)
    code = rng.random((3, 32, 32)) < 0.5
    mask = rng.random((32, 32)) < 0.97
    moved = np.roll(code, (1, -2), axis=(1, 2)) ^ (rng.random((3, 32, 32)) < 0.1)
    return Template.from_bits(code, mask), Template.from_bits(moved, np.ones((32, 32), bool))


def _distance(probe: Template, ref: Template, t: RevocableTransform | None,
              r: RevocableTransform | None) -> float:
    prepared = PreparedProbe(probe, transform=None if t is None else t.bits)
    stored = ref if r is None else r.apply(ref)
    return float(prepared.distances(ReferenceSet.from_templates([stored]))[0])


def test_same_key_preserves_the_shift_tolerant_distance() -> None:
    key = RevocableTransform(b"k" * 15 + b"1")
    for seed in range(5):
        ref, probe = _pair(seed)
        # the transform protects the CompCode matching of the index (no ordinal code)
        assert _distance(probe, ref, key, key) == pytest.approx(
            hamming_distance(probe, ref, fused=False))
    assert hamming_distance(*_pair(0), fused=False) < 0.2


def test_another_key_looks_like_an_impostor() -> None:
    a, b = RevocableTransform(b"a" * 16), RevocableTransform(b"b" * 16)
    assert a.key_id != b.key_id
    for seed in range(5):
        ref, probe = _pair(seed)
        assert _distance(probe, ref, b, a) > 0.4


def test_transform_is_keyed_and_checked() -> None:
    ref, _ = _pair(1)
    key = RevocableTransform(bytes(range(16)))
    assert key.apply(ref) == RevocableTransform(bytes(range(16))).apply(ref)
    assert key.apply(ref) != ref
    with pytest.raises(ValueError):
        RevocableTransform(b"short")
    with pytest.raises(ValueError):
        RevocableTransform(bytes(16), grid=(16, 16)).apply(ref)
