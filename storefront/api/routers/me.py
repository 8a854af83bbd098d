"""The privacy portal: ``/me/...`` endpoints of the signed-in shopper (bearer token).

Every endpoint acts on the token's shopper only; ids of another shopper's palm,
receipt or export answer 404, exactly like ids that do not exist.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from storefront.api.deps import ContainerDep
from storefront.api.routers.auth import PrivacyDep, ShopperDep
from storefront.api.schemas import ID_PATTERN
from storefront.errors import NotFound
from storefront.privacy.consent import CONSENT_TEXTS, CURRENT_TEXT_VERSION, PALM_PURPOSE
from storefront.privacy.retention import MAX_DAYS
from storefront.receipts import render_json

router = APIRouter(prefix="/me", tags=["privacy portal"])
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]


class ConsentIn(BaseModel):
    """Consent to ``purpose`` after being shown the text of ``text_version``."""

    model_config = ConfigDict(extra="forbid")
    purpose: str = Field(pattern=f"^{PALM_PURPOSE}$")
    text_version: str = Field(min_length=1, max_length=32)


class OptOutIn(BaseModel):
    """True: do not use my shopping history for recommendations or ads."""

    model_config = ConfigDict(extra="forbid")
    opt_out: bool = Field(strict=True)


class RetentionIn(BaseModel):
    """Retention periods in days; ``trip_retention_days`` null keeps trips while needed."""

    model_config = ConfigDict(extra="forbid")
    palm_retention_days: int = Field(strict=True, ge=1, le=MAX_DAYS)
    trip_retention_days: int | None = Field(default=None, strict=True, ge=1, le=MAX_DAYS)


def _json(value: Any) -> Any:
    return jsonable_encoder(asdict(value) if hasattr(value, "__dataclass_fields__") else value)


@router.get("")
def profile(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """My profile (never the payment token)."""
    return _json(p.portal.profile(shopper))


@router.get("/palms")
def palms(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """My enrolled palms: when and where enrolled, last used; never the template."""
    return [_json(v) for v in p.portal.palms(shopper)]


@router.delete("/palms")
def delete_palms(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Delete all my palms; the confirmation says what was deleted."""
    return _json(p.deletion.delete_all_palms(shopper_id=shopper))


@router.delete("/palms/{palm_id}")
def delete_palm(palm_id: IdPath, shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Delete one of my palms (404 for a palm that is not mine)."""
    return _json(p.deletion.delete_palm(shopper_id=shopper, palm_id=palm_id))


@router.get("/trips")
def trips(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """My trips, newest first, with their receipt ids; ``refunded_minor`` and
    ``refund_pending_minor`` (what disputes refunded, or are still refunding, to me) and
    ``current_total_minor`` (my receipt's latest, amended total) beside ``total_minor``
    (the total when I checked out). Minor units."""
    return [_json(t) for t in p.portal.trips(shopper)]


@router.get("/receipts/{receipt_id}")
def receipt(receipt_id: IdPath, shopper: ShopperDep, c: ContainerDep) -> Any:
    """One of my receipts (latest version) as JSON; 404 for another shopper's."""
    try:
        document = c.receipts.latest(receipt_id)
    except NotFound:
        document = None
    if document is None or document.shopper_id != shopper:
        raise NotFound(f"receipt {receipt_id!r} does not exist")
    return render_json(document)


@router.get("/devices")
def devices(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Store devices that recorded events of my trips."""
    return [_json(d) for d in p.portal.devices(shopper)]


@router.get("/consents")
def consents(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """My consent records and the current consent text."""
    return {"current_text_version": CURRENT_TEXT_VERSION,
            "current_text": CONSENT_TEXTS[CURRENT_TEXT_VERSION],
            "records": [_json(v) for v in p.consents.history(shopper)]}


@router.post("/consents", status_code=201)
def give_consent(body: ConsentIn, shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Record my consent to palm identification (needed before enrolment)."""
    return _json(p.consents.give(shopper_id=shopper, purpose=body.purpose,
                                 text_version=body.text_version))


@router.delete(f"/consents/{PALM_PURPOSE}")
def withdraw_consent(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Withdraw my palm consent: my palm data is deleted at once."""
    withdrawn = p.consents.withdraw(shopper_id=shopper, purpose=PALM_PURPOSE)
    return {"withdrawn": withdrawn, "palms_deleted": True}


@router.get("/choices")
def choices(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """My choices: recommendations opt-out and retention periods."""
    return p.portal.choices(shopper)


@router.put("/choices/recommendations")
def set_opt_out(body: OptOutIn, shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Opt out of (or back into) recommendations and ads based on my history."""
    p.consents.set_recommendations_opt_out(shopper_id=shopper, opt_out=body.opt_out)
    return p.portal.choices(shopper)


@router.put("/retention")
def set_retention(body: RetentionIn, shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Set how long my palm data (after last use) and my trips are kept."""
    p.retention.set_periods(shopper_id=shopper, palm_days=body.palm_retention_days,
                            trip_days=body.trip_retention_days)
    return p.portal.choices(shopper)


@router.post("/exports", status_code=202)
async def request_export(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Ask for an archive of everything held about me (state pending/ready)."""
    return _json(await run_in_threadpool(p.exports.request, shopper))


@router.get("/exports/{export_id}")
def export_status(export_id: IdPath, shopper: ShopperDep, p: PrivacyDep) -> Any:
    """The state of one of my exports."""
    return _json(p.exports.status(shopper, export_id))


@router.get("/exports/{export_id}/download", response_class=Response)
def export_download(export_id: IdPath, shopper: ShopperDep, p: PrivacyDep) -> Response:
    """The zip archive once ready (409 before)."""
    data = p.exports.download(shopper, export_id)
    return Response(data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{export_id}.zip"'})


@router.post("/entry-code", status_code=201)
def entry_code(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """A single-use code valid 2 minutes: enter at a gate without a palm."""
    return _json(p.entry_codes.issue(shopper))


@router.post("/enrolment-codes", status_code=201)
def enrolment_code(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """A single-use code valid 10 minutes that I show to staff so they may enrol my palm
    (``POST /shoppers/{id}/palms`` needs it: staff cannot enrol a palm without me)."""
    return _json(p.enrolment_codes.issue(shopper))


@router.delete("")
async def delete_account(shopper: ShopperDep, p: PrivacyDep) -> Any:
    """Delete my account: personal data erased, accounting records kept anonymised."""
    return _json(await run_in_threadpool(p.deletion.delete_account, shopper_id=shopper))
