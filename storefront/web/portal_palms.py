"""Portal pages: enrolled palms (metadata only, never the template) and deleting them.

Each deletion has its own confirmation page (GET shows what happens, POST deletes);
afterwards the palms page shows the confirmation returned by the deletion service.
The palms page also makes an enrolment code (POST ``/portal/palms/enrolment-code``): the
single-use code, valid 10 minutes, that the shopper shows to staff so they may enrol a
palm for them (staff cannot enrol a palm without it).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.accounts import TooManyAttempts
from storefront.errors import NotFound, StorefrontError
from storefront.privacy.deletion import DeletionConfirmation
from storefront.privacy.one_time_codes import IssuedCode
from storefront.web.auth import ShopperAction, ShopperPage, ShopperUser
from storefront.web.portal_common import IdPath, plural, privacy_of
from storefront.web.render import redirect, render, when

router = APIRouter(include_in_schema=False)
PALMS = "/portal/palms"


def deletion_summary(done: DeletionConfirmation) -> str:
    """One sentence for people: what a deletion erased, and when."""
    parts = [plural(done.deleted.get("palms", 0), "palm"),
             plural(done.deleted.get("templates", 0), "stored capture")]
    exports = done.deleted.get("exports", 0)
    ended = (f" {plural(exports, 'stored data export')} ended with it (request a new one)."
             if exports else "")
    return f"Deleted {' and '.join(parts)} at {when(done.at)}.{ended}"


def _palms_page(request: Request, user: ShopperUser, code: IssuedCode | None) -> Response:
    rows = privacy_of(request).portal.palms(user.shopper_id)
    return render(request, "portal/palms.html",
                  {"nav": "palms", "palms": rows, "enrolment_code": code}, user=user)


@router.get(PALMS)
def palms(request: Request, user: ShopperPage) -> Response:
    """My enrolled palms: when and where enrolled, when and where last used."""
    return _palms_page(request, user, None)


@router.post(f"{PALMS}/enrolment-code")
def enrolment_code(request: Request, user: ShopperAction) -> Response:
    """Issue an enrolment code to show to staff and show it on the palms page (in this
    answer only, never in a cookie or a URL; reloading asks for a new one)."""
    try:
        code = privacy_of(request).enrolment_codes.issue(user.shopper_id)
    except TooManyAttempts as exc:  # too many unused codes: say so on the page
        return redirect(request, PALMS, message=exc.reason, kind="error")
    return _palms_page(request, user, code)


def _palm_number(request: Request, shopper_id: str, palm_id: str) -> int:
    for number, palm in enumerate(privacy_of(request).portal.palms(shopper_id), start=1):
        if palm.id == palm_id:
            return number
    raise NotFound(f"palm {palm_id!r} does not exist")


@router.get(f"{PALMS}/{{palm_id}}/delete")
def confirm_delete_palm(request: Request, palm_id: IdPath, user: ShopperPage) -> Response:
    """Ask before deleting one palm (404 page for a palm that is not mine)."""
    number = _palm_number(request, user.shopper_id, palm_id)
    return render(request, "portal/palm_delete.html",
                  {"nav": "palms", "palm_id": palm_id, "number": number}, user=user)


@router.post(f"{PALMS}/{{palm_id}}/delete")
def delete_palm(request: Request, palm_id: IdPath, user: ShopperAction) -> Response:
    """Delete one of my palms, then show the deletion confirmation on the palms page."""
    try:
        done = privacy_of(request).deletion.delete_palm(
            shopper_id=user.shopper_id, palm_id=palm_id, actor=f"shopper:{user.shopper_id}")
    except StorefrontError as exc:
        return redirect(request, PALMS, message=exc.reason, kind="error")
    return redirect(request, PALMS, message=deletion_summary(done))


@router.get(f"{PALMS}/delete-all")
def confirm_delete_all(request: Request, user: ShopperPage) -> Response:
    """Ask before deleting every palm."""
    count = len(privacy_of(request).portal.palms(user.shopper_id))
    return render(request, "portal/palms_delete_all.html", {"nav": "palms", "count": count},
                  user=user)


@router.post(f"{PALMS}/delete-all")
def delete_all(request: Request, user: ShopperAction) -> Response:
    """Delete all my palms, then show the deletion confirmation on the palms page."""
    try:
        done = privacy_of(request).deletion.delete_all_palms(
            shopper_id=user.shopper_id, actor=f"shopper:{user.shopper_id}")
    except StorefrontError as exc:
        return redirect(request, PALMS, message=exc.reason, kind="error")
    return redirect(request, PALMS, message=deletion_summary(done))
