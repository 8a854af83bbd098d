"""Catalogue endpoints."""

from __future__ import annotations

from fastapi import APIRouter

from storefront.api.deps import ContainerDep
from storefront.api.schemas import ProductCodePath, ProductIn, ProductOut
from storefront.catalog import CatalogueItem, make_item
from storefront.errors import InvalidInput, NotFound, UnknownProduct
from storefront.security.api import Admin

router = APIRouter(prefix="/products", tags=["catalogue"])


def _out(item: CatalogueItem) -> ProductOut:
    return ProductOut(code=item.code, name=item.name, unit_price_minor=item.unit_price_minor,
                      currency=item.currency, is_gtin=item.is_gtin)


@router.put("/{code}", response_model=ProductOut)
def put_product(code: ProductCodePath, body: ProductIn, c: ContainerDep, _who: Admin
                ) -> ProductOut:
    """Create or replace a product (the path code must equal the body code); admins only."""
    if code != body.code:
        raise InvalidInput("product code in the path and the body differ")
    item = make_item(body.code, body.name, body.unit_price_minor, c.settings.currency)
    c.catalogue.upsert([item])
    return _out(item)


@router.get("/{code}", response_model=ProductOut)
def get_product(code: ProductCodePath, c: ContainerDep) -> ProductOut:
    """One product; 404 when unknown."""
    try:
        return _out(c.catalogue.get(code))
    except UnknownProduct as exc:
        raise NotFound(exc.reason) from exc
