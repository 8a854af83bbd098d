"""Real palms through the API: Tongji ROIs, session 1 enrols, session 2 is shown at the gate."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.realdata

N_IDENTITIES = 10


def _captures(tongji_dir: Path) -> dict[tuple[str, int], list[Path]]:
    by: dict[tuple[str, int], list[Path]] = defaultdict(list)
    with (tongji_dir / "manifest.csv").open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            by[(row["identity"], int(row["session"]))].append(tongji_dir / row["path"])
    return {key: sorted(paths) for key, paths in by.items()}


def test_real_palms_enrol_identify_and_shop(tongji_dir: Path, make_store: Any) -> None:
    captures = _captures(tongji_dir)
    identities = sorted({i for i, s in captures if (i, 2) in captures and s == 1})
    assert len(identities) >= N_IDENTITIES
    # Spread over the set, not only its first palms.
    chosen = identities[:: max(1, len(identities) // N_IDENTITIES)][:N_IDENTITIES]

    store = make_store(decline_rate=0.0)
    store.add_products()
    shopper_of: dict[str, str] = {}
    for identity in chosen:
        shopper = store.register(f"Palm {identity}")
        files = [("images", (p.name, p.read_bytes(), "image/png"))
                 for p in captures[(identity, 1)]]
        r = store.client.post(f"/shoppers/{shopper}/palms", files=files,
                              data={"consent_text_version": "2026-11",
                                    "enrolment_code": store.enrolment_code(shopper)})
        assert r.status_code == 201, r.text
        assert r.json()["templates"] >= len(files) - 1
        shopper_of[identity] = shopper

    entries = {identity: store.enter(captures[(identity, 2)][0].read_bytes())
               for identity in chosen}
    misidentified = [i for i, e in entries.items()
                     if e["admitted"] and e["shopper_id"] != shopper_of[i]]
    identified = [i for i, e in entries.items()
                  if e["admitted"] and e["shopper_id"] == shopper_of[i]]
    assert misidentified == []
    assert len(identified) >= 0.8 * len(chosen), entries
    for entry in entries.values():
        if not entry["admitted"]:
            assert entry["reason"] and entry["session_id"] is None, entry

    # One shopping trip to a receipt, for the first identified shopper.
    session_id = entries[identified[0]]["session_id"]
    water, apple = "5000112637922", "APPLE-1"
    for body in (store.event("picked", water, 2, "cart-r", 1, 5),
                 store.event("picked", apple, 3, "cart-r", 2, 6),
                 store.event("put_back", apple, 1, "cart-r", 3, 9)):
        assert store.send(session_id, body).status_code == 201
    out = store.client.post(f"/sessions/{session_id}/exit").json()
    assert out["status"] == "paid" and out["receipt_id"]
    assert out["total_minor"] == 2 * 95 + 2 * 35
    assert store.processor.captured_total() == out["total_minor"]
