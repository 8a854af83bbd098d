"""A small schemathesis run inside the suite: generated requests never get a 5xx.

The full run is ``python benchmarks/fuzz_api.py --examples 1000``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from fuzz_api import fuzz  # noqa: E402


def test_generated_requests_never_get_a_server_error(tmp_path: Path) -> None:
    result = fuzz(examples=120, seed=0, folder=tmp_path)
    assert result["requests"] >= 100 and result["operations"] >= 20
    assert result["server_errors"] == 0, result["failures"]
