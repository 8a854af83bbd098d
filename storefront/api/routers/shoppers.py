"""Shopper sign-up and palm enrolment endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from storefront.api.deps import ContainerDep
from storefront.api.routers.auth import PrivacyDep
from storefront.api.schemas import (
    CaptureOutcome,
    EnrolmentOut,
    ShopperIdPath,
    ShopperIn,
    ShopperOut,
)
from storefront.api.uploads import read_image
from storefront.errors import InvalidInput
from storefront.security.api import Checkout

router = APIRouter(prefix="/shoppers", tags=["shoppers"])


@router.post("", response_model=ShopperOut, status_code=201)
def register(body: ShopperIn, c: ContainerDep, _who: Checkout) -> ShopperOut:
    """Create a shopper account at the store (checkout staff; shoppers sign up themselves
    at ``/auth/signup``). Open to anyone, it would let strangers fill the table. Such a
    shopper has no sign-in account, so cannot make the enrolment code that staff-assisted
    enrolment needs: to use a palm they sign up themselves."""
    view = c.shoppers.register(display_name=body.display_name, payment_token=body.payment_token)
    return ShopperOut(id=view.id, display_name=view.display_name, created_at=view.created_at)


@router.get("/{shopper_id}", response_model=ShopperOut)
def get_shopper(shopper_id: ShopperIdPath, c: ContainerDep, _who: Checkout) -> ShopperOut:
    """One shopper (checkout staff; shoppers see themselves under ``/me``)."""
    view = c.shoppers.get(shopper_id)
    return ShopperOut(id=view.id, display_name=view.display_name, created_at=view.created_at)


@router.post("/{shopper_id}/palms", response_model=EnrolmentOut, status_code=201,
             responses={403: {"description": "enrolment code refused"},
                        429: {"description": "too many wrong enrolment codes (Retry-After)"}})
async def enrol(shopper_id: ShopperIdPath, request: Request, c: ContainerDep, who: Checkout,
                p: PrivacyDep,
                images: Annotated[list[UploadFile], File(description="palm captures")],
                enrolment_code: Annotated[str | None, Form(
                    max_length=64, description="the code the signed-in shopper "
                    "created (POST /me/enrolment-codes, or Palms in the portal) and shows "
                    "to staff: their proof of presence, single use, valid 10 minutes")] = None,
                consent_text_version: Annotated[str | None, Form(
                    max_length=32, description="version of the consent text the shopper "
                    "accepted at this staff point (recorded with the enrolment, as given "
                    "at staff:<id>)")] = None,
                ) -> EnrolmentOut:
    """Staff-assisted enrolment of one palm from several captures, with the shopper's
    enrolment code; each capture's outcome is reported.

    The code is checked first: missing, wrong, expired, used or another shopper's -> 403
    ``enrolment_code_refused`` with nothing stored (a shopper registered here without a
    sign-in account cannot make one: they sign up first); too many wrong codes from this
    staff member or address -> 429. Without a recorded consent (or
    ``consent_text_version``) -> 409 ``consent_required``. The code is used up by the
    enrolment's final write, together with the consent and the templates.
    """
    client = request.client.host if request.client else "unknown"
    code = p.enrolment_codes.check(enrolment_code, shopper_id=shopper_id,
                                   staff_id=who.id, client=client)
    most = c.identity.max_enrolment_captures
    if not 1 <= len(images) <= most:  # before any upload is read into memory
        raise InvalidInput(f"between 1 and {most} captures are needed ({len(images)} sent)")
    data = [await read_image(upload) for upload in images]
    # Image work is CPU-bound: keep it off the event loop.
    result = await run_in_threadpool(c.shoppers.enrol_palm, shopper_id=shopper_id, images=data,
                                     actor=f"staff:{who.id}",
                                     store_id=c.settings.store_id,
                                     consent_text_version=consent_text_version,
                                     enrolment_code=code)
    return EnrolmentOut(
        shopper_id=shopper_id, templates=len(result.template_ids),
        captures=[CaptureOutcome(index=o.index, accepted=o.accepted, reason=o.reason)
                  for o in result.captures])
