"""A small built-in grocery catalogue and seeded baskets, for the demo on a fresh machine.

Codes are GTIN-13 numbers in the GS1 "restricted circulation" prefix 20-29
(store-internal numbers, so they collide with no real product), with check
digits computed by python-stdnum. Prices are tax-inclusive, in minor units.
"""

from __future__ import annotations

import random

from stdnum import ean

from storefront.baskets import Basket
from storefront.catalog import CatalogueItem, make_item

_PRODUCTS: tuple[tuple[str, int], ...] = (
    ("Semi-skimmed milk 1 l", 115), ("Free-range eggs x6", 239), ("Sourdough loaf", 295),
    ("Salted butter 250 g", 225), ("Cheddar 400 g", 375), ("Greek yoghurt 500 g", 189),
    ("Bananas x5", 99), ("Apples x6", 210), ("Cherry tomatoes 250 g", 135),
    ("Baby spinach 200 g", 150), ("Carrots 1 kg", 69), ("Potatoes 2 kg", 145),
    ("Spaghetti 500 g", 79), ("Basmati rice 1 kg", 219), ("Chopped tomatoes 400 g", 55),
    ("Chickpeas 400 g", 65), ("Olive oil 500 ml", 499), ("Ground coffee 227 g", 345),
    ("Tea bags x80", 250), ("Orange juice 1 l", 185), ("Sparkling water 1.5 l", 60),
    ("Dark chocolate 100 g", 149), ("Oat biscuits", 119), ("Crisps multipack", 225),
    ("Hummus 200 g", 125), ("Chicken breasts 500 g", 450), ("Salmon fillets x2", 425),
    ("Frozen peas 900 g", 149), ("Vanilla ice cream 1 l", 275), ("Washing-up liquid", 129),
    ("Toilet roll x9", 499), ("Toothpaste 75 ml", 150), ("Sandwich", 325),
    ("Sushi box", 550), ("Flowers bouquet", 600), ("Newspaper", 200),
)


def _gtin(index: int) -> str:
    body = f"2{index:011d}"
    return body + ean.calc_check_digit(body)


def builtin_items(currency: str = "GBP") -> list[CatalogueItem]:
    """The built-in catalogue (36 products with valid GTIN-13 codes)."""
    return [make_item(_gtin(i + 1), name, price, currency)
            for i, (name, price) in enumerate(_PRODUCTS)]


def synthetic_baskets(count: int, seed: int, items: list[CatalogueItem]) -> list[Basket]:
    """``count`` seeded baskets of 1-8 distinct products, 1-3 of each."""
    rng = random.Random(seed)
    baskets = []
    for number in range(count):
        chosen = rng.sample(items, rng.randint(1, min(8, len(items))))
        lines = tuple(sorted((item.code, rng.randint(1, 3)) for item in chosen))
        prices = {item.code: item.unit_price_minor for item in chosen}
        total = sum(prices[code] * qty for code, qty in lines)
        baskets.append(Basket(f"SYN{number:05d}", lines, total))
    return baskets
