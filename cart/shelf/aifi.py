"""Loader of the AiFi AutoCheckout (2020) ground truth and store metadata, given a folder.

Files read: ``ground_truth_v14.json`` (trips, each a list of pick / put-back events with
gondola, shelf, plates and products) and ``store_meta_Plates.json`` (the plates of every
shelf). Source: AutoCheckout-CMU/AutoCheckout. Data quirks handled here:

- a product listed N times in one event is N units; GTINs stay strings (leading zeros kept);
- product weights differ between events for a few GTINs (placeholders of 1 g, one 41 g for a
  538 g bottle): the unit weight is the most frequent weight above 5 g (ties: the larger);
  a product with no such weight has an unknown unit weight;
- products named UNKNOWN / UNKOWN are *unidentified* units; an event listing no product at
  all (5 annotations, 2 of them without a time) carries no unit;
- the planogram is derived from the picks: a product's facing on a shelf is the plates named
  by at least half of its picks there; two events name plate 12 of a shelf with 9 plates:
  they keep their plates (no sensor could see them) but give no facing;
- times are absolute (``2019-11-07_02-35-28``, ``11_07_2019_03:08:19``) or a video offset plus
  a start (``1:52 + 2019-11-07_02-41-19``); they carry no zone and are read as UTC.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cart.shelf.errors import ShelfDataError
from cart.shelf.inference import ShelfAction
from cart.shelf.planogram import Planogram, Product, ShelfId, build_planogram

UNKNOWN_CODES = frozenset({"UNKNOWN", "UNKOWN"})
MIN_REAL_WEIGHT_G = 5.0


@dataclass(frozen=True)
class GroundTruthEvent:
    """One annotated event: ``items`` (gtin, quantity) and ``unidentified`` units of unknown items.

    ``time`` is None when the annotation has no time (then it also lists no product).
    """

    event_id: str
    action: ShelfAction
    shelf: ShelfId
    plates: tuple[int, ...]
    time: datetime | None
    items: tuple[tuple[str, int], ...]
    unidentified: int


@dataclass(frozen=True)
class AifiTrip:
    """One test shopping trip: its dataset name and its events in time order."""

    name: str
    events: tuple[GroundTruthEvent, ...]


@dataclass(frozen=True)
class AifiStore:
    """The trips and the planogram derived from them (every pick position is a facing)."""

    trips: tuple[AifiTrip, ...]
    planogram: Planogram


def parse_time(text: str) -> datetime | None:
    """Parse one AiFi time string to tz-aware UTC; None for an empty one.

    Raises :class:`ShelfDataError` for text in no known format.
    """
    text = text.strip()
    if not text or text == "+":
        return None
    if "+" in text:
        offset, _, start = (part.strip() for part in text.partition("+"))
        base = parse_time(start)
        parts = offset.split(":")
        if base is None or not all(p.isdigit() for p in parts) or len(parts) > 3:
            raise ShelfDataError(f"unreadable AiFi time {text!r}")
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + int(part)
        return base + timedelta(seconds=seconds)
    for fmt in ("%Y-%m-%d_%H-%M-%S", "%m_%d_%Y_%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ShelfDataError(f"unreadable AiFi time {text!r}")


def load_aifi(folder: Path) -> AifiStore:
    """Read the AiFi ground truth and plate metadata from ``folder``.

    Raises :class:`ShelfDataError` when a file is missing or malformed.
    """
    try:
        truth = json.loads((folder / "ground_truth_v14.json").read_text(encoding="utf-8"))
        plates = json.loads((folder / "store_meta_Plates.json").read_text(encoding="utf-8"))
        raw_trips: list[dict[str, Any]] = truth["lists"]
        counts = _plates_per_shelf(plates["plates"])
        products = _catalogue(raw_trips)
        trips = tuple(_trip(t, products) for t in raw_trips)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ShelfDataError(f"cannot read the AiFi data in {folder}: {exc}") from exc
    return AifiStore(trips, build_planogram(products.values(), _facings(trips, counts), counts))


def _facings(
    trips: tuple[AifiTrip, ...], counts: dict[ShelfId, int]
) -> list[tuple[str, ShelfId, list[int]]]:
    """Facing of each (product, shelf): the plates named by at least half of its picks there.

    Annotators name the plates under the hand, which often include a neighbour's plate; the
    majority keeps the product's own plates. Plates the shelf does not have are dropped (two
    annotations name plate 12 of a 9-plate shelf).
    """
    picks: dict[tuple[str, ShelfId], Counter[int]] = {}
    events: Counter[tuple[str, ShelfId]] = Counter()
    for trip in trips:
        for e in trip.events:
            if e.action is not ShelfAction.PICK:
                continue
            for gtin, _ in e.items:
                events[(gtin, e.shelf)] += 1
                picks.setdefault((gtin, e.shelf), Counter()).update(e.plates)
    out = []
    for (gtin, shelf), plates in sorted(picks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        n = events[(gtin, shelf)]
        kept = [q for q, c in plates.items() if 2 * c >= n and q <= counts.get(shelf, 0)]
        if kept:
            out.append((gtin, shelf, sorted(kept)))
    return out


def _plates_per_shelf(raw: list[dict[str, Any]]) -> dict[ShelfId, int]:
    counts: dict[ShelfId, int] = {}
    for plate in raw:
        sid = plate["id"]["shelf_id"]
        shelf = ShelfId(int(sid["gondola_id"]["id"]), int(sid["shelf_index"]))
        counts[shelf] = max(counts.get(shelf, 0), int(plate["id"]["plate_index"]))
    return counts


def _catalogue(raw_trips: list[dict[str, Any]]) -> dict[str, Product]:
    weights: dict[str, Counter[float]] = {}
    names: dict[str, str] = {}
    for trip in raw_trips:
        for event in trip["events"]:
            for item in event["observation"]["products"]:
                gtin = str(item["id"])
                if gtin in UNKNOWN_CODES:
                    continue
                names.setdefault(gtin, str(item["name"]))
                counter = weights.setdefault(gtin, Counter())
                if float(item["weight"]) > MIN_REAL_WEIGHT_G:
                    counter[round(float(item["weight"]), 2)] += 1
    products: dict[str, Product] = {}
    for gtin, counter in weights.items():
        best = max(counter.items(), key=lambda kv: (kv[1], kv[0]))[0] if counter else None
        products[gtin] = Product(gtin, names[gtin], best)
    return products


def _trip(raw: dict[str, Any], products: dict[str, Product]) -> AifiTrip:
    events = [_event(e, products) for e in raw["events"]]
    events.sort(key=lambda e: (e.time or datetime.max.replace(tzinfo=UTC), e.event_id))
    return AifiTrip(str(raw["dataset"]), tuple(events))


def _event(raw: dict[str, Any], products: dict[str, Product]) -> GroundTruthEvent:
    obs = raw["observation"]
    pos = obs["position"]
    codes = [str(item["id"]) for item in obs["products"]]
    known = Counter(c for c in codes if c not in UNKNOWN_CODES and c in products)
    unidentified = len(codes) - sum(known.values()) if codes else 0
    time = parse_time(str(obs["time"]))
    if time is None and codes:
        raise ShelfDataError(f"event {raw['eventID']} lists products but has no time")
    return GroundTruthEvent(
        event_id=str(raw["eventID"]),
        action=ShelfAction.PUT_BACK if int(raw["putback"]) else ShelfAction.PICK,
        shelf=ShelfId(int(pos["gondola"]), int(pos["shelf"])),
        plates=tuple(sorted(int(p) for p in pos["plates"])),
        time=time,
        items=tuple(sorted(known.items())),
        unidentified=unidentified,
    )
