"""API request and response schemas (kept apart from the table models)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from storefront.catalog import MAX_PRICE_MINOR
from storefront.pricing.israel import has_visible
from storefront.pricing.receipt_text import has_control

EARLIEST_SENSOR_TIME = datetime(2000, 1, 1, tzinfo=UTC)
ID_PATTERN = r"^[A-Za-z0-9._-]+$"


def _printable(value: str) -> str:
    """``value`` unless it holds a control character: C0 (NUL, tab, line breaks, ESC...),
    DEL, C1 (U+0080-U+009F) or U+2028 / U+2029, as the catalogue import refuses them
    (:func:`storefront.pricing.receipt_text.has_control`). Raises ValueError (422)."""
    if has_control(value):
        raise ValueError("control characters (such as NUL, ESC, line breaks, U+0080-U+009F, "
                         "U+2028, U+2029) are not allowed")
    return value


def _product_name(value: str) -> str:
    """A printable (:func:`_printable`) name with a visible character: not only
    whitespace and invisible characters (U+200B, U+FEFF, U+00AD, ...; see
    :func:`storefront.pricing.israel.has_visible`), which a receipt prints empty, as the
    catalogue import refuses it. Raises ValueError (422)."""
    if not _printable(value).strip():
        raise ValueError("a product name must not be only whitespace")
    if not has_visible(value):
        raise ValueError("a product name must not be only whitespace and invisible "
                         "characters (such as U+200B, U+200D, U+FEFF, U+00AD, U+202E): it "
                         "needs a visible character")
    return value


def _plausible_time(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time is out of range once converted to UTC") from exc
    if utc < EARLIEST_SENSOR_TIME:
        raise ValueError(f"time is before {EARLIEST_SENSOR_TIME.date()}")
    # How far ahead of the server clock: checked by the route (the injected clock and
    # Settings.device_max_future_skew_s, refused device_time_in_future).
    return utc


Text = Annotated[str, AfterValidator(_printable)]
ProductName = Annotated[str, AfterValidator(_product_name)]
StrictCount = Annotated[int, Field(strict=True)]
def _iso_text(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("time must be ISO 8601 text with an offset, e.g. 2026-05-04T10:00:00Z")
    return value


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]")
# Strict: ISO 8601 text with an offset; numbers or numeric text (Unix times) are refused.
SensorTime = Annotated[AwareDatetime, BeforeValidator(_iso_text),
                       AfterValidator(_plausible_time)]
SessionIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
ShopperIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
ProductCodePath = Annotated[str, Path(min_length=1, max_length=32, pattern=ID_PATTERN)]


class ProductIn(BaseModel):
    """A product to add: price in minor currency units."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    name: ProductName = Field(min_length=1, max_length=300)
    unit_price_minor: StrictCount = Field(ge=0, le=MAX_PRICE_MINOR)


class ProductOut(BaseModel):
    """A catalogue product."""

    code: str
    name: str
    unit_price_minor: int
    currency: str
    is_gtin: bool


class ShopperIn(BaseModel):
    """Sign-up: the payment token is a processor token, never a card number."""

    model_config = ConfigDict(extra="forbid")
    display_name: Text = Field(min_length=1, max_length=200)
    payment_token: Text = Field(min_length=1, max_length=200)


class ShopperOut(BaseModel):
    """A shopper account."""

    id: str
    display_name: str
    created_at: datetime


class CaptureOutcome(BaseModel):
    """What happened to one enrolment capture."""

    index: int
    accepted: bool
    reason: str


class EnrolmentOut(BaseModel):
    """Result of a palm enrolment."""

    shopper_id: str
    templates: int
    captures: list[CaptureOutcome]


class EntryOut(BaseModel):
    """The gate's decision; ``identify_ms`` in milliseconds."""

    admitted: bool
    outcome: str
    reason: str
    session_id: str | None
    shopper_id: str | None
    score: float
    identify_ms: float


class ItemEventIn(BaseModel):
    """An item event from a shelf, camera or smart cart."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["picked", "put_back"]
    product_code: str = Field(min_length=1, max_length=32, pattern=ID_PATTERN)
    quantity: StrictCount = Field(ge=1, le=999)
    device_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    device_seq: StrictCount = Field(ge=0, le=2**62)
    sensor_time: SensorTime
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, strict=True)


class ItemEventOut(BaseModel):
    """Where the event landed in the session's log."""

    session_id: str
    version: int
    position: int


class CartLineOut(BaseModel):
    """One line of the current cart."""

    product_code: str
    quantity: int


class SessionOut(BaseModel):
    """A shopping session with its current cart and flags."""

    id: str
    shopper_id: str
    status: str
    entry_method: str
    opened_at: datetime
    exited_at: datetime | None
    total_minor: int | None
    staffed_reason: str | None
    cart: list[CartLineOut]
    flags: list[str]


class ExitOut(BaseModel):
    """Outcome of the exit: paid with a receipt, or sent to the staffed checkout."""

    session_id: str
    status: str
    total_minor: int | None
    currency: str
    receipt_id: str | None
    reason: str | None
    lines: list[dict[str, object]]
