"""Smart carts: decoding what the scanner read, and pairing scans with the cart's scale.

A smart cart reports two kinds of observation, each with its own device sequence:
``CartScanned`` (a barcode or a PLU typed/scanned) and ``CartScaleChanged`` (the
scale settled at a new load, signed grams). Neither alone goes on the bill: a scan
must be confirmed by a weight change of the right sign within :data:`PAIR_WINDOW`,
and a weight change must be explained by a scan. What stays unpaired is flagged for
review. Pairing is a pure function of the *set* of observations (sorted by sensor
time, device sequence as tie-break), so delivery order and repetition do not matter.

Codes (decoded by :func:`decode_code`):

- IFPS PLU (International Federation for Produce Standards): 4 digits 3000-4999;
  5 digits with a leading 9 are the organic version of the 4-digit code.
- GTIN-8/12/13/14 (GS1 General Specifications section 3): check digit verified by
  ``biip``. GS1 restricted circulation numbers with prefix 20-29 are store-internal
  variable-measure labels; ``biip`` decodes the embedded weight or price with the
  rules of the configured region (``rcn_region``, e.g. ``"gb"``, ``"de"``, ``"se"``).
  When ``biip`` finds no weight or price rule for the prefix, the code falls back to
  :attr:`CodeKind.STORE_INTERNAL`: weighed, with the grams taken from the scale.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from biip import ParseConfig, ParseError, parse
from biip.rcn import Rcn

from cart.errors import InvalidCommand
from cart.events import CartScaleChanged, CartScanned

SCALE_TOLERANCE_G = 20
"""Largest |label weight - scale change| in grams for a variable-weight label to match
a scale change (typical smart-cart load cells resolve 2-5 g; labels round to 5 g)."""

SCALE_NOISE_G = 5
"""Scale changes of at most this many grams (either sign) are noise: never paired,
never flagged."""

PAIR_WINDOW = timedelta(seconds=10)
"""Largest time between a scan and the scale change that confirms it (either order)."""

_GTIN_LENGTHS = frozenset({8, 12, 13, 14})


class CodeKind(enum.StrEnum):
    """What a scanned code identifies."""

    GTIN = "gtin"
    """A trade item sold by the unit."""
    PLU = "plu"
    """Loose produce by IFPS PLU, weighed on the cart's scale."""
    VARIABLE_WEIGHT = "variable_weight"
    """A GS1 variable-measure label carrying the net weight."""
    VARIABLE_PRICE = "variable_price"
    """A GS1 variable-measure label carrying the price to pay."""
    STORE_INTERNAL = "store_internal"
    """A restricted-circulation number biip could not decode; weighed on the scale."""


@dataclass(frozen=True)
class DecodedCode:
    """A decoded scan: ``code`` as scanned; ``plu`` the 4-digit IFPS code for PLUs
    (``organic`` for the 9-prefixed form); ``grams`` or ``price_minor`` (minor units)
    embedded in a variable-measure label; ``note`` why a fallback was taken."""

    code: str
    kind: CodeKind
    plu: str | None = None
    organic: bool = False
    grams: int | None = None
    price_minor: int | None = None
    note: str | None = None

    @property
    def weighed(self) -> bool:
        """True when the item is sold by weight or label, not by the unit."""
        return self.kind is not CodeKind.GTIN


def _decode_plu(code: str) -> DecodedCode:
    organic = len(code) == 5
    if organic and code[0] != "9":
        raise InvalidCommand(f"5-digit PLU {code!r} must start with 9 (organic)")
    base = code[-4:]
    if not 3000 <= int(base) <= 4999:
        raise InvalidCommand(f"PLU {code!r}: IFPS PLUs are 3000-4999, got {base}")
    return DecodedCode(code, CodeKind.PLU, plu=base, organic=organic)


def _decode_rcn(code: str, rcn: Rcn) -> DecodedCode:
    if rcn.weight is not None:
        grams = int((Decimal(rcn.weight) * 1000).to_integral_value())
        return DecodedCode(code, CodeKind.VARIABLE_WEIGHT, grams=grams)
    if rcn.price is not None:
        # Every region biip knows (DK, EE, FI, DE, GB, LV, LT, NO, SE) has 2 minor digits.
        minor = int((Decimal(rcn.price) * 100).to_integral_value())
        return DecodedCode(code, CodeKind.VARIABLE_PRICE, price_minor=minor)
    note = f"biip has no weight or price rule for prefix {code[:2]} in this region"
    return DecodedCode(code, CodeKind.STORE_INTERNAL, note=note)


def decode_code(code: str, *, rcn_region: str = "gb") -> DecodedCode:
    """Decode a scanned ``code`` (digits, as a string) into a :class:`DecodedCode`.

    ``rcn_region`` is a biip ``RcnRegion`` value (``"gb"``, ``"de"``, ``"se"``, ...)
    whose rules decode variable-measure labels. Raises InvalidCommand for a code that
    is not digits, a 4/5-digit code outside the IFPS PLU ranges, or a GTIN that biip
    rejects (wrong length or check digit, bad variable-measure check digit).
    """
    if not isinstance(code, str) or not code.isascii() or not code.isdigit():
        raise InvalidCommand(f"a scanned code must be a string of digits, got {code!r}")
    if len(code) in (4, 5):
        return _decode_plu(code)
    if len(code) not in _GTIN_LENGTHS:
        raise InvalidCommand(f"code {code!r}: expected a 4/5-digit PLU or an 8/12/13/14-digit GTIN")
    try:
        result = parse(code, config=ParseConfig(rcn_region=rcn_region))
    except ParseError as exc:
        raise InvalidCommand(f"code {code!r} cannot be decoded: {exc}") from exc
    if result.gtin is None:
        raise InvalidCommand(f"code {code!r} is not a valid GTIN: {result.gtin_error}")
    if isinstance(result.gtin, Rcn) and code.zfill(14)[1] == "2":
        return _decode_rcn(code, result.gtin)
    return DecodedCode(code, CodeKind.GTIN)


OpKind = Literal["pick", "put_back", "weigh_add", "weigh_remove", "flag"]


@dataclass(frozen=True)
class CartOp:
    """One change to a cart, in sensor order: ``amount`` is units for picks and
    put-backs, grams for weigh operations (0 for flags). ``reason`` names a flag."""

    sensor_time: datetime
    device_id: str
    device_seq: int
    kind: OpKind
    code: str | None
    amount: int
    confidence: float = 1.0
    label_price_minor: int | None = None
    reason: str | None = None
    detail: str = ""


SmartCartEvent = CartScanned | CartScaleChanged


def _ordered(events: Iterable[SmartCartEvent]) -> list[SmartCartEvent]:
    unique = {e.device_key: e for e in sorted(events, key=repr)}  # repeats: one survives
    return sorted(unique.values(), key=lambda e: (e.sensor_time, e.device_id, e.device_seq))


def _paired_op(scan: CartScanned, change: CartScaleChanged, decoded: DecodedCode) -> CartOp:
    adding = change.delta_grams > 0
    grams = decoded.grams if decoded.grams is not None else abs(change.delta_grams)
    kind: OpKind
    if decoded.weighed:
        kind, amount = ("weigh_add" if adding else "weigh_remove"), grams
    else:
        kind, amount = ("pick" if adding else "put_back"), 1
    at = max(scan.sensor_time, change.sensor_time)
    return CartOp(at, scan.device_id, scan.device_seq, kind, scan.code, amount,
                  label_price_minor=decoded.price_minor)


def _flag(event: CartScanned | CartScaleChanged, reason: str, detail: str) -> CartOp:
    code = event.code if isinstance(event, CartScanned) else None
    return CartOp(event.sensor_time, event.device_id, event.device_seq, "flag", code, 0,
                  reason=reason, detail=detail)


def _matches(scan: CartScanned, change: CartScaleChanged, decoded: DecodedCode,
             window: timedelta, tolerance_g: int) -> bool:
    if abs(change.sensor_time - scan.sensor_time) > window:
        return False
    return decoded.grams is None or abs(abs(change.delta_grams) - decoded.grams) <= tolerance_g


def reconcile(
    events: Iterable[CartScanned | CartScaleChanged],
    *,
    tolerance_g: int = SCALE_TOLERANCE_G,
    noise_g: int = SCALE_NOISE_G,
    window: timedelta = PAIR_WINDOW,
    rcn_region: str = "gb",
) -> list[CartOp]:
    """Pair each scan with the nearest-in-time unpaired scale change of the same cart.

    Scans are taken in sensor order; a scan pairs with the change closest in time
    within ``window`` (and, for variable-weight labels, within ``tolerance_g`` grams
    of the label). A positive change adds, a negative one removes. Unpaired scans
    become ``scan_without_weight`` flags, unexplained changes above ``noise_g``
    become ``weight_without_scan`` flags, undecodable codes ``undecodable_code``.
    Returns the operations in no particular order (the projection sorts them).
    """
    ordered = _ordered(events)
    changes = [e for e in ordered if isinstance(e, CartScaleChanged)
               and abs(e.delta_grams) > noise_g]
    paired: set[tuple[str, int]] = set()
    ops: list[CartOp] = []
    for scan in (e for e in ordered if isinstance(e, CartScanned)):
        try:
            decoded = decode_code(scan.code, rcn_region=rcn_region)
        except InvalidCommand as exc:
            ops.append(_flag(scan, "undecodable_code", exc.reason))
            continue
        candidates = [c for c in changes if c.device_id == scan.device_id
                      and c.device_key not in paired
                      and _matches(scan, c, decoded, window, tolerance_g)]
        if not candidates:
            ops.append(_flag(scan, "scan_without_weight",
                             f"no scale change within {window} matched scan of {scan.code}"))
            continue
        best = min(candidates, key=lambda c: (abs(c.sensor_time - scan.sensor_time),
                                              c.device_seq))
        paired.add(best.device_key)
        ops.append(_paired_op(scan, best, decoded))
    ops.extend(_flag(c, "weight_without_scan", f"{c.delta_grams:+d} g with no scan")
               for c in changes if c.device_key not in paired)
    return ops
