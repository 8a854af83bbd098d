"""CompCode's winning-orientation bits (compiled) against numpy's argmin, ties and NaN too."""

from __future__ import annotations

import numpy as np
import pytest

from identity.features import _ORIENTATION_BITS
from identity.kernels import competitive_bits


def _numpy(responses: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.moveaxis(table[np.argmin(responses, axis=1)], -1, 1)


@pytest.mark.parametrize("seed", range(4))
def test_equals_numpy_argmin_on_random_responses(seed: int) -> None:
    rng = np.random.default_rng(seed)
    responses = rng.normal(size=(5, 6, 32, 32)).astype(np.float32)
    got = competitive_bits(responses, _ORIENTATION_BITS)
    assert got.dtype == np.bool_ and got.shape == (5, 3, 32, 32)
    assert np.array_equal(got, _numpy(responses, _ORIENTATION_BITS))


def test_ties_nan_inf_and_signed_zero_follow_numpy() -> None:
    rng = np.random.default_rng(9)
    responses = rng.integers(-2, 3, size=(3, 6, 8, 8)).astype(np.float32)  # many ties
    responses[0, 2, 0, 0] = np.nan
    responses[0, 4, 0, 0] = np.nan
    responses[1, :, 1, 1] = np.nan
    responses[1, 3, 2, 2] = -np.inf
    responses[2, :, 3, 3] = 0.0
    responses[2, 1, 3, 3] = -0.0
    responses[2, 5, 4, 4] = np.inf
    assert np.array_equal(competitive_bits(responses, _ORIENTATION_BITS),
                          _numpy(responses, _ORIENTATION_BITS))


def test_a_strided_input_is_read_as_its_values() -> None:
    base = np.random.default_rng(2).normal(size=(4, 6, 16, 16)).astype(np.float32)
    view = base[::2, :, ::2, ::2]  # not contiguous
    assert np.array_equal(competitive_bits(view, _ORIENTATION_BITS),
                          _numpy(view, _ORIENTATION_BITS))


@pytest.mark.parametrize(("responses", "table"), [
    (np.zeros((2, 6, 4), np.float32), _ORIENTATION_BITS),  # 3-D
    (np.zeros((2, 6, 4, 4), np.float64), _ORIENTATION_BITS),  # float64
    (np.zeros((2, 5, 4, 4), np.float32), _ORIENTATION_BITS),  # 5 responses, 6 table rows
    (np.zeros((2, 6, 4, 4), np.float32), _ORIENTATION_BITS.astype(np.uint8)),
    (np.zeros((2, 0, 4, 4), np.float32), np.zeros((0, 3), bool)),
])
def test_malformed_inputs_are_refused(responses: np.ndarray, table: np.ndarray) -> None:
    with pytest.raises(ValueError, match="need"):
        competitive_bits(responses, table)
