"""Catalogue endpoints.

``PUT /products/{code}`` creates a product or changes its name and price; the flags
(``sold_by_weight``, ``tax_category``, ``allow_discount``, ``age_restricted``) are
optional in the body and, when left out, keep their stored values (a new product gets
the defaults): a price change never clears an age restriction. Clearing one takes an
explicit ``"age_restricted": false``. A product withdrawn from sale (a catalogue import
that replaced the store did not list it: ``withdrawn_at`` set, pricing refuses it) is put
back on sale by ``PUT`` with its price.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import Field, StrictBool

from storefront.api.deps import ContainerDep
from storefront.api.schemas import ProductCodePath, ProductIn, ProductOut
from storefront.catalog import CatalogueItem
from storefront.errors import InvalidInput, NotFound, UnknownProduct
from storefront.pricing import PromotionRepository
from storefront.pricing.model import STANDARD_TAX_CATEGORY
from storefront.security.api import Admin

router = APIRouter(prefix="/products", tags=["catalogue"])


class ProductPut(ProductIn):
    """A product to create or update; a flag left out keeps its stored value."""

    sold_by_weight: StrictBool | None = None
    tax_category: str | None = Field(default=None, min_length=1, max_length=32,
                                     pattern=r"^[A-Za-z0-9._-]+$")
    allow_discount: StrictBool | None = None
    age_restricted: StrictBool | None = None


class ProductDetail(ProductOut):
    """A catalogue product with the flags that govern its sale."""

    sold_by_weight: bool
    tax_category: str
    allow_discount: bool
    age_restricted: bool
    withdrawn_at: datetime | None = Field(
        default=None, description="withdrawn from sale since then (UTC; null: on sale)")


def _out(item: CatalogueItem) -> ProductDetail:
    return ProductDetail(code=item.code, name=item.name, unit_price_minor=item.unit_price_minor,
                         currency=item.currency, is_gtin=item.is_gtin,
                         sold_by_weight=item.sold_by_weight, tax_category=item.tax_category,
                         allow_discount=item.allow_discount,
                         age_restricted=item.age_restricted,
                         withdrawn_at=item.withdrawn_at)


@router.put("/{code}", response_model=ProductDetail)
def put_product(code: ProductCodePath, body: ProductPut, c: ContainerDep, _who: Admin
                ) -> ProductDetail:
    """Create a product or update its name and price (the path code must equal the body
    code); flags left out of the body keep their stored values; a product withdrawn from
    sale is back on sale at this price. Admins only.

    Raises InvalidInput (422): codes differ, bad name or price, unknown tax category.
    """
    if code != body.code:
        raise InvalidInput("product code in the path and the body differ")
    known = {STANDARD_TAX_CATEGORY, *PromotionRepository(c.catalogue.sessions).tax_rates()}
    item = c.catalogue.merge(body.code, body.name, body.unit_price_minor, c.settings.currency,
                             sold_by_weight=body.sold_by_weight,
                             tax_category=body.tax_category,
                             allow_discount=body.allow_discount,
                             age_restricted=body.age_restricted, known_tax_categories=known)
    return _out(item)


@router.get("/{code}", response_model=ProductDetail)
def get_product(code: ProductCodePath, c: ContainerDep) -> ProductDetail:
    """One product with its flags; 404 when unknown."""
    try:
        return _out(c.catalogue.get(code))
    except UnknownProduct as exc:
        raise NotFound(exc.reason) from exc
