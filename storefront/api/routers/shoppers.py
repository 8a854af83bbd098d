"""Shopper sign-up and palm enrolment endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool

from storefront.api.deps import ContainerDep
from storefront.api.schemas import (
    CaptureOutcome,
    EnrolmentOut,
    ShopperIdPath,
    ShopperIn,
    ShopperOut,
)
from storefront.api.uploads import read_image
from storefront.security.api import Checkout

router = APIRouter(prefix="/shoppers", tags=["shoppers"])


@router.post("", response_model=ShopperOut, status_code=201)
def register(body: ShopperIn, c: ContainerDep, _who: Checkout) -> ShopperOut:
    """Create a shopper account at the store (checkout staff; shoppers sign up themselves
    at ``/auth/signup``). Open to anyone, it would let strangers fill the table."""
    view = c.shoppers.register(display_name=body.display_name, payment_token=body.payment_token)
    return ShopperOut(id=view.id, display_name=view.display_name, created_at=view.created_at)


@router.get("/{shopper_id}", response_model=ShopperOut)
def get_shopper(shopper_id: ShopperIdPath, c: ContainerDep, _who: Checkout) -> ShopperOut:
    """One shopper (checkout staff; shoppers see themselves under ``/me``)."""
    view = c.shoppers.get(shopper_id)
    return ShopperOut(id=view.id, display_name=view.display_name, created_at=view.created_at)


@router.post("/{shopper_id}/palms", response_model=EnrolmentOut, status_code=201)
async def enrol(shopper_id: ShopperIdPath, c: ContainerDep, who: Checkout,
                images: Annotated[list[UploadFile], File(description="palm captures")],
                consent_text_version: Annotated[str | None, Form(
                    max_length=32, description="version of the consent text the shopper "
                    "accepted at the kiosk (recorded before enrolling)")] = None
                ) -> EnrolmentOut:
    """Enrol one or more palm captures; each capture's outcome is reported.

    Without a recorded consent to palm identification the answer is 409
    ``consent_required``.
    """
    data = [await read_image(upload) for upload in images]
    # Image work is CPU-bound: keep it off the event loop.
    result = await run_in_threadpool(c.shoppers.enrol_palm, shopper_id=shopper_id, images=data,
                                     actor=f"staff:{who.id}",
                                     store_id=c.settings.store_id,
                                     consent_text_version=consent_text_version)
    return EnrolmentOut(
        shopper_id=shopper_id, templates=len(result.template_ids),
        captures=[CaptureOutcome(index=o.index, accepted=o.accepted, reason=o.reason)
                  for o in result.captures])
