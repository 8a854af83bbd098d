"""Rows of the Israeli price-transparency files -> catalogue items and promotions.

Israel's Food Act (Promotion of Competition in the Food Sector, 2014) makes
large chains publish every store's prices (``PriceFull``) and promotions
(``PromoFull``). The files read here are CSV exports of those with Hebrew
headers; prices in shekels (ILS, 100 agorot). Pure functions, no I/O: a bad row
raises ``Rejected`` with a short reason that the importer counts.

Promotion rows (``סוג הטבה`` is the standard's RewardType):

- coupon promotions (``קופון`` = 1) need a coupon the store cannot see: rejected.
- RewardType 1 or 10 with a price: "N for P" (multi-buy), or a fixed price when N
  is 1; for weighed goods N is kilograms and P is prorated over the weight
  (N of 10 g or less means "any weight": P is then a price per kg).
- RewardType 1 or 10 without a price, and 2: percentage off from N.
- RewardType 3: fixed price per unit (per kg for weighed goods) from N.
- RewardType 8 or 9: buy N-1, get one at the rate off (no rate: free).
- RewardType 0 (unspecified) and others: rejected.

Rates above 100 are hundredths of a percent (some chains write 5000 for 50 %),
rates up to 100 are percent. The free-text description is kept for the receipt
and never parsed.

Numbers (prices, rates, minimum quantities) must be plain decimals as the files
write them (``12.90``, ``3``, ``-5``): ASCII digits with an optional sign and
decimal point, at most 15 decimals. Exponents (``1e3``), NaN, Infinity, digit
separators and non-ASCII digits reject the row. A price or promotion price is
0.01 to ``MAX_PRICE_MINOR`` agorot (the catalogue's bound); a minimum quantity
at most ``MAX_MIN_QUANTITY`` units or kg.

Text: a product name or promotion description holding a control character (C0 or C1,
tab and line breaks included, or U+2028 / U+2029; see
:func:`storefront.pricing.receipt_text.has_control`) rejects the row, as the API
refuses such a name; runs of spaces are then collapsed. A product name with no visible
character (only whitespace and invisible characters such as U+200B, U+FEFF or U+00AD:
:func:`has_visible`) rejects the row too, as the API refuses it. A promotion id is 1 to
``MAX_PROMO_ID_CHARS`` characters without any. A valid-until date is ``YYYY-MM-DD``
(what the files write), optionally followed by a time ``HH:MM`` or ``HH:MM:SS``
after ``T`` or a space, which is ignored; anything else rejects the row.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation

from storefront.catalog import MAX_PRICE_MINOR, CatalogueItem, make_item
from storefront.errors import InvalidInput
from storefront.money import parse_major_to_minor
from storefront.pricing.model import FULL_RATE_BP, MILLI_PER_UNIT, Promotion, PromotionKind
from storefront.pricing.receipt_text import has_control

CURRENCY = "ILS"
PRICE_COLUMNS = {"chain": "מזהה רשת", "store": "מזהה חנות", "barcode": "ברקוד",
                 "name": "שם מוצר", "price": "מחיר (₪)", "weighed": "שקיל",
                 "allow_discount": "מותר הנחה"}
PROMO_COLUMNS = {"chain": "מזהה רשת", "store": "מזהה חנות", "barcode": "ברקוד",
                 "promo_id": "מזהה מבצע", "description": "תיאור מבצע",
                 "valid_until": "בתוקף עד", "min_qty": "כמות מינימום",
                 "price": "מחיר מבצע (₪)", "rate": "שיעור הנחה", "club": "מועדון",
                 "coupon": "קופון", "reward_type": "סוג הטבה"}
_ANY_WEIGHT_GRAMS = 10
MAX_MIN_QUANTITY = 1_000_000
"""The largest minimum quantity of a promotion row (units, or kg for weighed goods); the
files' largest is 10,000. Keeps the milli-quantities stored far inside their columns."""
MAX_PROMO_ID_CHARS = 32
"""The longest promotion id kept (the files' longest is 10): with the chain and store
ids (at most 20 characters each) the stored promotion id stays within its 80."""
_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]"
                   r"(?::[0-5][0-9])?)?")
"""A valid-until date as the files write it (ASCII digits), an optional time ignored."""
_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]{0,15})?|\.[0-9]{1,15})")
"""ASCII digits, optional sign and point, at most 15 decimals: with the bounds below, every
number accepted is computed exactly in Decimal's 28 digits (no silent rounding)."""


class Rejected(Exception):
    """A row that cannot be imported; ``reason`` is a short, countable phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PromoRow:
    """One accepted promotion row: the chain's promotion id, its terms, one product code."""

    promo_id: str
    code: str
    terms: Promotion


def parse_product(row: Mapping[str, str]) -> CatalogueItem:
    """A catalogue item (ILS agorot; price per kg when weighed) from a price row.

    Raises:
        Rejected: missing barcode or name, a control character in the name, a name with
            no visible character (:func:`has_visible`), a price that
            is not a plain decimal of whole agorot, not positive or above
            ``MAX_PRICE_MINOR``, bad flags.
    """
    code, name = row["barcode"].strip(), _text(row["name"], "control character in name")
    if not code:
        raise Rejected("missing barcode")
    if not name:
        raise Rejected("missing name")
    if not has_visible(name):
        raise Rejected("no visible character in name")
    price = _minor(row["price"], "price")
    weighed = _flag(row["weighed"], default=False, reason="bad weighed flag")
    allow = _flag(row["allow_discount"], default=True, reason="bad allow-discount flag")
    try:
        return make_item(code, name[:300], price, CURRENCY, sold_by_weight=weighed,
                         allow_discount=allow)
    except InvalidInput as exc:
        raise Rejected("bad barcode") from exc


def parse_promotion_row(row: Mapping[str, str], products: Mapping[str, CatalogueItem],
                        *, prefix: str, as_of: date | None = None) -> PromoRow:
    """The terms of one promotion row for one product of ``products``.

    Raises:
        Rejected: coupon, unknown product, bad promotion id, control character in
            the description, unsupported reward type, bad numbers, bad date, expired
            before ``as_of``.
    """
    if _flag(row["coupon"], default=False, reason="bad coupon flag"):
        raise Rejected("needs a coupon")
    item = products.get(row["barcode"].strip())
    if item is None:
        raise Rejected("unknown product")
    promo_id = _promo_id(row["promo_id"])
    description = _text(row["description"], "control character in description")
    valid_until = _date(row["valid_until"])
    if as_of is not None and valid_until is not None and valid_until < as_of:
        raise Rejected("expired")
    base = Promotion(f"{prefix}:{promo_id}", PromotionKind.PERCENT_OFF, frozenset({item.code}),
                     description[:300], rate_bp=FULL_RATE_BP,
                     club_only=_flag(row["club"], default=False, reason="bad club flag"),
                     valid_until=valid_until)
    try:
        return PromoRow(promo_id, item.code, _terms(row, item, base))
    except InvalidInput as exc:
        raise Rejected("inconsistent terms") from exc


def group_promotions(rows: list[PromoRow]) -> list[Promotion]:
    """One promotion per (chain promotion id, terms), with every product code it covers.

    A chain id whose rows carry different terms (a different price per product)
    becomes several promotions, ``id``, ``id#2``, ... in order of first appearance;
    a suffixed id that is already some promotion's id of the rows (a file with ids
    ``X``, ``X`` and ``X#2``) is skipped for the next number (``X#3``), so every
    promotion returned has its own id.
    """
    groups: dict[tuple[str, Promotion], set[str]] = {}
    for row in rows:
        key = (row.promo_id, replace(row.terms, codes=frozenset({"*"})))
        groups.setdefault(key, set()).add(row.code)
    taken = {terms.promotion_id for _, terms in groups}  # every id of the file, unsuffixed
    seen: dict[str, int] = {}
    out = []
    for (promo_id, terms), codes in groups.items():
        seen[promo_id] = seen.get(promo_id, 0) + 1
        new_id = terms.promotion_id
        if seen[promo_id] > 1:
            while (new_id := f"{terms.promotion_id}#{seen[promo_id]}") in taken:
                seen[promo_id] += 1
            taken.add(new_id)
        out.append(replace(terms, promotion_id=new_id, codes=frozenset(codes)))
    return out


def _terms(row: Mapping[str, str], item: CatalogueItem, base: Promotion) -> Promotion:
    # Only the columns a reward type uses are parsed: chains fill the others with
    # derived or meaningless numbers (e.g. a "rate" of -99400 on a fixed price).
    kind = row["reward_type"].strip()
    milli = _min_milli(row["min_qty"], item)
    if kind in ("1", "10") and row["price"].strip():
        return _priced_bundle(base, item, milli, _price(row["price"]))
    if kind in ("1", "10", "2"):
        rate = _rate(row["rate"])
        if rate is None:
            raise Rejected("missing discount rate")
        return replace(base, min_quantity_milli=milli, rate_bp=rate)
    if kind == "3":
        if not row["price"].strip():
            raise Rejected("missing promotion price")
        return _fixed(base, milli, _price(row["price"]))
    if kind in ("8", "9"):
        if item.sold_by_weight or milli < 2 * MILLI_PER_UNIT:
            raise Rejected("buy-x-get-y needs 2+ units of a unit-priced product")
        units = milli // MILLI_PER_UNIT
        return replace(base, kind=PromotionKind.BUY_X_GET_Y,
                       rate_bp=_rate(row["rate"]) or FULL_RATE_BP,
                       buy_units=units - 1, get_units=1, min_quantity_milli=milli)
    raise Rejected(f"unsupported reward type {kind or '(empty)'}")


def _priced_bundle(base: Promotion, item: CatalogueItem, milli: int, price: int) -> Promotion:
    if item.sold_by_weight and milli > _ANY_WEIGHT_GRAMS:
        return replace(base, kind=PromotionKind.MULTI_BUY, rate_bp=None, price_minor=price,
                       bundle_milli=milli, min_quantity_milli=milli)
    if milli <= MILLI_PER_UNIT:
        return _fixed(base, milli, price)
    return replace(base, kind=PromotionKind.MULTI_BUY, rate_bp=None, price_minor=price,
                   bundle_milli=milli, min_quantity_milli=milli)


def _fixed(base: Promotion, milli: int, price: int) -> Promotion:
    return replace(base, kind=PromotionKind.FIXED_PRICE, rate_bp=None, price_minor=price,
                   min_quantity_milli=milli if milli > MILLI_PER_UNIT else 0)


def _min_milli(text: str, item: CatalogueItem) -> int:
    value = _decimal(text or "1", "bad minimum quantity")
    if value < 0:
        raise Rejected("negative minimum quantity")
    if value > MAX_MIN_QUANTITY:
        raise Rejected("minimum quantity too large")
    milli = value * MILLI_PER_UNIT
    if item.sold_by_weight:
        return int(milli.to_integral_value())  # grams
    if value <= 1:
        return MILLI_PER_UNIT  # 0, 0.01 and 1 all mean "from one unit" for unit goods
    if value != value.to_integral_value():
        raise Rejected("fractional quantity of a unit-priced product")
    return int(milli)


def _price(text: str) -> int:
    return _minor(text, "promotion price")


def _minor(text: str, what: str) -> int:
    """Agorot from a plain decimal of shekels; rejected as "bad <what>" (not a plain
    decimal, or finer than one agora), "non-positive <what>" or "<what> above the maximum".
    """
    if not _PLAIN_DECIMAL.fullmatch(text.strip()):
        raise Rejected(f"bad {what}")
    if Decimal(text.strip()) * 100 > MAX_PRICE_MINOR:  # plain decimal: exact enough here
        raise Rejected(f"{what} above the maximum")
    try:
        price = parse_major_to_minor(text)
    except InvalidInput as exc:
        raise Rejected(f"bad {what}") from exc
    if price <= 0:
        raise Rejected(f"non-positive {what}")
    if price > MAX_PRICE_MINOR:
        raise Rejected(f"{what} above the maximum")
    return price


def _rate(text: str) -> int | None:
    if not text.strip():
        return None
    value = _decimal(text, "bad discount rate")
    basis_points = value if value > 100 else value * 100
    if basis_points == 0:
        return None
    if not 0 < basis_points <= FULL_RATE_BP or basis_points != basis_points.to_integral_value():
        raise Rejected("bad discount rate")
    return int(basis_points)


def _decimal(text: str, reason: str) -> Decimal:
    """A plain decimal (see the module docstring); raises Rejected(reason) otherwise."""
    if not _PLAIN_DECIMAL.fullmatch(text.strip()):
        raise Rejected(reason)
    try:
        return Decimal(text.strip())
    except InvalidOperation as exc:  # not reached for a plain decimal; kept as a guard
        raise Rejected(reason) from exc


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Letters and symbols that print as blank space: the Hangul fillers and the blank
Braille pattern."""


def is_visible(char: str) -> bool:
    """True unless ``char`` prints as nothing or blank space on its own: whitespace,
    control and format characters (category Cc, Cf: U+200B, U+200D, U+FEFF, U+00AD,
    bidi controls such as U+202E ...), separators, combining marks (Mn, Me: they need a
    base) and blank letters (Hangul fillers, U+2800)."""
    return not (char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES
                or char in _BLANK_LETTERS)


def has_visible(text: str) -> bool:
    """True when ``text`` holds a character of :func:`is_visible`: a product name without
    one prints empty on a receipt. Invisible characters between visible ones (a
    zero-width joiner in an emoji sequence) are fine."""
    return any(is_visible(char) for char in text)


def _text(text: str, reason: str) -> str:
    """``text`` with its runs of spaces collapsed; Rejected(reason) if it holds a control
    character (checked first: collapsing would hide line breaks and tabs)."""
    if has_control(text):
        raise Rejected(reason)
    return " ".join(text.split())


def _promo_id(text: str) -> str:
    """The promotion id (stripped of spaces); Rejected when empty, too long or holding a
    control character (anywhere: stripping would drop a trailing line break or tab)."""
    promo_id = text.strip()
    if not promo_id:
        raise Rejected("missing promotion id")
    if len(promo_id) > MAX_PROMO_ID_CHARS or has_control(text):
        raise Rejected("bad promotion id")
    return promo_id


def _date(text: str) -> date | None:
    """The date of a valid-until cell (see the module docstring); None when empty."""
    if not text.strip():
        return None
    match = _DATE.fullmatch(text.strip())
    try:
        if match is None:
            raise ValueError(text)
        return date.fromisoformat(match.group(1))
    except ValueError as exc:
        raise Rejected("bad valid-until date") from exc


def _flag(text: str, *, default: bool, reason: str) -> bool:
    value = text.strip()
    if not value:
        return default
    if value in ("0", "1"):
        return value == "1"
    raise Rejected(reason)
