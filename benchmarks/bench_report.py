"""Printing a benchmark's report and saving it as JSON (shared by the scripts here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_and_save(report: dict[str, Any], path: Path | None, *,
                   sort_keys: bool = False) -> None:
    """Print ``report`` as indented JSON and, when ``path`` is given, write it there
    (parent folders created)."""
    text = json.dumps(report, indent=2, sort_keys=sort_keys)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
