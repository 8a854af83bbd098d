"""A device's disk buffer: messages kept while the broker is unreachable, replayed in order.

An append-only file of JSON lines ``{"topic": ..., "body": ...}`` (``body`` is the
unsigned message object; it is signed when it is finally sent, so the frame's
timestamp is fresh). Appends are flushed and fsynced, so a buffered message
survives the device process. A torn last line (power cut mid-write) is skipped.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class DiskBuffer:
    """FIFO of ``(topic, body)`` entries in one file; thread-safe.

    ``path``: the buffer file (its folder is created). ``fsync``: force each append
    to disk (True on real devices; tests and benchmarks may turn it off for speed).
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._count = len(self._read())

    def __len__(self) -> int:
        """Entries waiting."""
        return self._count

    def append(self, topic: str, body: dict[str, Any]) -> None:
        """Add one entry at the end (durably when ``fsync``)."""
        line = json.dumps({"topic": topic, "body": body}, separators=(",", ":")) + "\n"
        with self._lock, self._path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())
            self._count += 1

    def take_all(self) -> list[tuple[str, dict[str, Any]]]:
        """Remove and return every entry, oldest first."""
        with self._lock:
            entries = self._read()
            self._path.unlink(missing_ok=True)
            self._count = 0
            return entries

    def _read(self) -> list[tuple[str, dict[str, Any]]]:
        if not self._path.exists():
            return []
        entries: list[tuple[str, dict[str, Any]]] = []
        for line in self._path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                entries.append((str(entry["topic"]), dict(entry["body"])))
            except (ValueError, KeyError, TypeError):
                continue  # a torn write at power loss: that message was never sent
        return entries
