"""Shared by the scripts here: printing a benchmark's report and saving it as JSON, and
finding a palm set under ``$STOREFRONT_DATA_DIR``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn


def print_and_save(report: dict[str, Any], path: Path | None, *,
                   sort_keys: bool = False) -> None:
    """Print ``report`` as indented JSON and, when ``path`` is given, write it there
    (parent folders created)."""
    text = json.dumps(report, indent=2, sort_keys=sort_keys)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def palm_set_folder(given: Path | None, name: str) -> Path:
    """The palm set folder: ``given``, else ``$STOREFRONT_DATA_DIR/palm/<name>``.

    Raises SystemExit (status 2, with the reason) when neither is set or the folder has
    no ``manifest.csv``.
    """
    folder = given
    if folder is None:
        data_dir = os.environ.get("STOREFRONT_DATA_DIR")
        if not data_dir:
            _exit_usage("error: give --palms or set STOREFRONT_DATA_DIR")
        folder = Path(data_dir) / "palm" / name
    if not (folder / "manifest.csv").is_file():
        _exit_usage(f"error: {folder}/manifest.csv not found")
    return folder


def _exit_usage(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)
