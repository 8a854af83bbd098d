"""``PUT /products`` names: what the catalogue import refuses, the API refuses too."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from storefront.api.schemas import ProductIn, ShopperIn

BODY = {"code": "C1", "unit_price_minor": 100}


@pytest.mark.parametrize("name", [
    "a\x00b", "a\x1b[31mb", "a\tb", "a\nb", "a\x7fb",
    "a\x80b", "a\x85b", "a\x9bb", "a\x9fb",  # C1 controls
    "a\u2028b", "a\u2029b",  # line and paragraph separators
])
def test_names_with_control_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        ProductIn.model_validate({**BODY, "name": name})
    with pytest.raises(ValidationError, match="control characters"):
        ShopperIn.model_validate({"display_name": name, "payment_token": "tok_1"})


@pytest.mark.parametrize("name", [" ", "   ", "\u00a0", "\u3000 "])
def test_names_of_only_whitespace_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="only whitespace"):
        ProductIn.model_validate({**BODY, "name": name})


@pytest.mark.parametrize("name", ['סוכר לבן 1 ק"ג', "خبز عربي", "Café crème", "牛奶 1L",
                                  "a\u00a0b", " padded "])
def test_names_in_any_script_are_accepted(name: str) -> None:
    assert ProductIn.model_validate({**BODY, "name": name}).name == name


@pytest.mark.parametrize("name", ["\u200b", "\u200d", "\ufeff", "\u00ad", "\u202e",
                                  "\u200b \ufeff", "\u2060\u2061", "\U000e0041"])
def test_names_of_only_invisible_characters_are_refused(name: str) -> None:
    """Were accepted (a receipt printed them empty), as the catalogue import did."""
    with pytest.raises(ValidationError, match="needs a visible character"):
        ProductIn.model_validate({**BODY, "name": name})


@pytest.mark.parametrize("name", ["👨\u200d👩\u200d👧", "a\u200bb", "\ufeffmilk", "co\u00adop"])
def test_names_with_invisible_characters_between_visible_ones_are_accepted(name: str) -> None:
    assert ProductIn.model_validate({**BODY, "name": name}).name == name
