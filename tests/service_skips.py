"""Skipping for a missing service or data set, except under ``CI=true`` where it fails
(DEVELOPERS guide). Importable by any test module (``tests/`` is on the import path
through the root conftest), unlike ``conftest`` whose bare name is ambiguous."""

from __future__ import annotations

import os

import pytest


def under_ci() -> bool:
    """True when running under CI, where missing services or data are failures."""
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip the test with ``reason``, or fail it when under CI."""
    if under_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
