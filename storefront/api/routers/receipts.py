"""Receipt endpoints: itemised receipts as JSON, plain text or HTML, and disputes.

``GET /receipts/{id}`` picks the format from ``?format=json|text|html`` or else
from the ``Accept`` header (``text/html``, ``text/plain``, ``application/json``;
JSON when the client accepts anything).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from storefront.api.deps import ContainerDep
from storefront.api.schemas import ID_PATTERN, StrictCount, Text
from storefront.receipts import render_html, render_json, render_text
from storefront.security.api import Checkout

router = APIRouter(tags=["receipts"])

ReceiptIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
Format = Literal["json", "text", "html"]
_BY_MEDIA: dict[str, Format] = {"application/json": "json", "text/plain": "text",
                                "text/html": "html", "application/xhtml+xml": "html",
                                "*/*": "json", "text/*": "text", "application/*": "json"}


class DisputeIn(BaseModel):
    """A shopper disputes ``quantity`` of a product on the receipt (units, or grams).

    ``dispute_key`` is the client's idempotency key: the same dispute sent again
    refunds once. ``till_id``: the till paying out any part that was paid in cash.
    """

    model_config = ConfigDict(extra="forbid")
    dispute_key: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    product_code: str = Field(min_length=1, max_length=32, pattern=ID_PATTERN)
    quantity: StrictCount = Field(ge=1, le=1_000_000)
    reason: Text = Field(min_length=1, max_length=300)
    till_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=ID_PATTERN)


def negotiate(accept: str | None) -> Format | None:
    """The format for an ``Accept`` header (RFC 9110 section 12.5.1, q-values honoured);
    None when nothing offered is acceptable."""
    if not accept:
        return "json"
    best: tuple[float, int, Format] | None = None
    for order, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        fmt = _BY_MEDIA.get(media.lower())
        if fmt is not None and quality > 0 and (best is None or (quality, -order) > best[:2]):
            best = (quality, -order, fmt)
    return best[2] if best else None


@router.get("/receipts/{receipt_id}", response_model=None,
            responses={200: {"content": {"text/plain": {}, "text/html": {}}}})
def get_receipt(receipt_id: ReceiptIdPath, c: ContainerDep, _who: Checkout,
                format: Annotated[Format | None, Query()] = None,  # noqa: A002 - API name
                accept: Annotated[str | None, Header()] = None) -> Response:
    """The receipt (or an amended receipt) as JSON, plain text or HTML (checkout staff)."""
    chosen = format or negotiate(accept)
    if chosen is None:
        return JSONResponse({"error": "not_acceptable",
                             "reason": "receipts are offered as application/json, text/plain "
                                       "and text/html"}, status_code=406)
    doc = c.receipts.get(receipt_id)
    if chosen == "html":
        return HTMLResponse(render_html(doc))
    if chosen == "text":
        return PlainTextResponse(render_text(doc))
    return JSONResponse(_jsonable(render_json(doc)))


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = jsonable_encoder(body)
    return encoded


@router.post("/receipts/{receipt_id}/disputes", status_code=201)
def dispute(receipt_id: ReceiptIdPath, body: DisputeIn, c: ContainerDep,
            who: Checkout) -> dict[str, Any]:
    """Dispute a line: refund through the processor (once per key) and an amended receipt.

    Checkout staff, up to their role's refund limit (403 above it).
    """
    limits = c.security.settings
    limit = (limits.manager_refund_limit_minor if who.role == "manager"
             else limits.cashier_refund_limit_minor)
    result = c.disputes.dispute(receipt_id=receipt_id, dispute_key=body.dispute_key,
                                product_code=body.product_code, quantity=body.quantity,
                                reason=body.reason, till_id=body.till_id,
                                actor=f"staff:{who.id}", max_refund_minor=limit)
    return asdict(result)
