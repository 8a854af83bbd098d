"""The planogram: which product sits on which weight plates of which shelf, and its unit weight.

Plates are addressed as in the AiFi Nanostore metadata: gondola, shelf index within the
gondola, plate index within the shelf (1-based, left to right; neighbouring indices are
physically adjacent plates, 0.1016 m apart).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cart.shelf.errors import ShelfDataError


@dataclass(frozen=True, order=True)
class ShelfId:
    """One shelf: ``gondola`` number and ``shelf`` index within it (both >= 1)."""

    gondola: int
    shelf: int

    def __post_init__(self) -> None:
        if self.gondola < 1 or self.shelf < 1:
            raise ShelfDataError(f"gondola and shelf must be >= 1, got {self}")


@dataclass(frozen=True, order=True)
class PlateId:
    """One weight plate: its shelf and ``plate`` index within the shelf (>= 1)."""

    shelf: ShelfId
    plate: int

    def __post_init__(self) -> None:
        if self.plate < 1:
            raise ShelfDataError(f"plate index must be >= 1, got {self.plate}")


@dataclass(frozen=True)
class Product:
    """A product as the shelf sees it.

    ``gtin`` is the barcode as a string (leading zeros kept). ``unit_weight_g`` is the weight
    of one unit in grams, or None when it is unknown (then weight alone can never identify
    the product and changes that may involve it go to review).
    """

    gtin: str
    name: str
    unit_weight_g: float | None

    def __post_init__(self) -> None:
        if not isinstance(self.gtin, str) or not self.gtin.strip():
            raise ShelfDataError(f"product code must be a non-empty string, got {self.gtin!r}")
        if self.unit_weight_g is not None and not self.unit_weight_g > 0:
            raise ShelfDataError(f"unit weight of {self.gtin} must be > 0 g")


@dataclass(frozen=True)
class Facing:
    """Product ``gtin`` is stocked on ``plates`` (plate indices) of ``shelf``."""

    gtin: str
    shelf: ShelfId
    plates: frozenset[int]

    def __post_init__(self) -> None:
        if not self.plates or min(self.plates) < 1:
            raise ShelfDataError(f"facing of {self.gtin} needs plate indices >= 1")


@dataclass(frozen=True)
class Planogram:
    """Products, their facings, and the number of plates of every shelf.

    Raises :class:`ShelfDataError` when a facing names an unknown product, an unknown
    shelf, or a plate index beyond the shelf's plate count.
    """

    products: Mapping[str, Product]
    facings: tuple[Facing, ...]
    plates_per_shelf: Mapping[ShelfId, int]
    _by_plate: dict[PlateId, frozenset[str]] = field(init=False, repr=False, compare=False)
    _facing: dict[tuple[ShelfId, str], frozenset[int]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_plate: dict[PlateId, set[str]] = {}
        for facing in self.facings:
            if facing.gtin not in self.products:
                raise ShelfDataError(f"facing names unknown product {facing.gtin!r}")
            count = self.plates_per_shelf.get(facing.shelf)
            if count is None or max(facing.plates) > count:
                raise ShelfDataError(f"facing of {facing.gtin} is off shelf {facing.shelf}")
            for plate in facing.plates:
                by_plate.setdefault(PlateId(facing.shelf, plate), set()).add(facing.gtin)
        object.__setattr__(self, "_by_plate", {k: frozenset(v) for k, v in by_plate.items()})
        plates_of: dict[tuple[ShelfId, str], frozenset[int]] = {}
        for f in self.facings:
            key = (f.shelf, f.gtin)
            plates_of[key] = plates_of.get(key, frozenset()) | f.plates
        object.__setattr__(self, "_facing", plates_of)

    def products_on(self, shelf: ShelfId, plates: Iterable[int]) -> frozenset[str]:
        """GTINs with a facing on any of ``plates`` of ``shelf`` (empty when none; plate
        indices off the shelf hold nothing)."""
        found: set[str] = set()
        for plate in plates:
            if plate >= 1:
                found |= self._by_plate.get(PlateId(shelf, plate), frozenset())
        return frozenset(found)

    def facing_plates(self, shelf: ShelfId, gtin: str) -> frozenset[int]:
        """Plate indices of ``shelf`` that stock ``gtin`` (empty when it has no facing there)."""
        return self._facing.get((shelf, gtin), frozenset())

    def shelves(self) -> list[ShelfId]:
        """Every shelf, sorted."""
        return sorted(self.plates_per_shelf)


def build_planogram(
    products: Iterable[Product],
    placements: Iterable[tuple[str, ShelfId, Iterable[int]]],
    plates_per_shelf: Mapping[ShelfId, int],
) -> Planogram:
    """Merge placement records ``(gtin, shelf, plate indices)`` into one facing per (gtin, shelf).

    Raises :class:`ShelfDataError` for duplicate products with different weights or bad
    placements.
    """
    catalogue: dict[str, Product] = {}
    for product in products:
        known = catalogue.get(product.gtin)
        if known is not None and known != product:
            raise ShelfDataError(f"product {product.gtin} is listed twice with different data")
        catalogue[product.gtin] = product
    merged: dict[tuple[str, ShelfId], set[int]] = {}
    for gtin, shelf, plates in placements:
        merged.setdefault((gtin, shelf), set()).update(plates)
    facings = tuple(
        Facing(gtin, shelf, frozenset(plates))
        for (gtin, shelf), plates in sorted(merged.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    )
    return Planogram(catalogue, facings, dict(plates_per_shelf))
