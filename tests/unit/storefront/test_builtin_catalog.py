from storefront.builtin_catalog import builtin_items, synthetic_baskets


def test_builtin_items_are_valid_gtins_with_unique_codes() -> None:
    items = builtin_items()
    assert len({i.code for i in items}) == len(items) >= 30
    assert all(i.is_gtin and i.unit_price_minor > 0 for i in items)


def test_synthetic_baskets_are_seeded_and_totalled() -> None:
    items = builtin_items()
    prices = {i.code: i.unit_price_minor for i in items}
    baskets = synthetic_baskets(20, 5, items)
    assert baskets == synthetic_baskets(20, 5, items)
    for basket in baskets:
        assert basket.expected_total_minor == sum(prices[c] * q for c, q in basket.lines)
        assert all(q >= 1 for _, q in basket.lines)
