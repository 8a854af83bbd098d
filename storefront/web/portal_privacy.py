"""Portal page "Privacy and data": export, retention, consent and the recommendations opt-out.

Each section posts to its own handler, which calls the same privacy service as the
``/me`` API and comes back to the page with a message (Post/Redirect/Get). While an
export is being prepared the page refreshes itself every 3 seconds.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from storefront.accounts import TooManyAttempts
from storefront.db.models import PrivacyExport
from storefront.errors import InvalidInput, StorefrontError
from storefront.privacy.consent import CONSENT_TEXTS, CURRENT_TEXT_VERSION, PALM_PURPOSE
from storefront.privacy.export import ExportStatus
from storefront.privacy.retention import MAX_DAYS
from storefront.web.auth import ShopperAction, ShopperPage, form_text
from storefront.web.portal_common import IdPath, container_of, plural, privacy_of
from storefront.web.render import redirect, render

router = APIRouter(include_in_schema=False)
PRIVACY = "/portal/privacy"
EXPORTS_SHOWN = 10
_DAYS = re.compile(r"^[0-9]{1,9}$")


def _exports(request: Request, shopper_id: str) -> list[ExportStatus]:
    """The shopper's latest exports, newest first (states from the export service)."""
    with container_of(request).db() as db:
        ids = list(db.scalars(sa.select(PrivacyExport.id)
                              .where(PrivacyExport.shopper_id == shopper_id)
                              .order_by(PrivacyExport.requested_at.desc())
                              .limit(EXPORTS_SHOWN)))
    exports = privacy_of(request).exports
    return [exports.status(shopper_id, export_id) for export_id in ids]


@router.get(PRIVACY)
def privacy_page(request: Request, user: ShopperPage) -> Response:
    """Export, retention, consent, recommendations and the way to delete the account."""
    p = privacy_of(request)
    history = p.consents.history(user.shopper_id)
    exports = _exports(request, user.shopper_id)
    return render(request, "portal/privacy.html", {
        "nav": "privacy", "exports": exports,
        "preparing": any(e.state in ("pending", "running") for e in exports),
        "choices": p.portal.choices(user.shopper_id), "max_days": MAX_DAYS,
        "consent_text": CONSENT_TEXTS[CURRENT_TEXT_VERSION],
        "consent_version": CURRENT_TEXT_VERSION, "history": history,
        "consent_given": any(c.purpose == PALM_PURPOSE and c.withdrawn_at is None
                             for c in history)}, user=user)


@router.post(f"{PRIVACY}/exports")
async def request_export(request: Request, user: ShopperAction) -> Response:
    """Ask for an archive of everything held about me (built now, or in the background);
    asking too often comes back with the reason."""
    try:
        status = await run_in_threadpool(privacy_of(request).exports.request, user.shopper_id)
    except TooManyAttempts as exc:
        return redirect(request, PRIVACY, message=exc.reason, kind="error")
    message = ("Your data export is ready to download." if status.state == "ready" else
               "Your data export is being prepared; this page refreshes until it is ready.")
    return redirect(request, PRIVACY, message=message)


@router.get("/portal/exports/{export_id}/download")
def download_export(request: Request, export_id: IdPath, user: ShopperPage) -> Response:
    """The zip archive of one of my exports (404 page for another's, 409 before ready, 410
    once expired)."""
    data = privacy_of(request).exports.download(user.shopper_id, export_id)
    return Response(data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{export_id}.zip"'})


def _days(text: str, label: str) -> int:
    """Whole days typed by the shopper; InvalidInput with the reason otherwise."""
    if not _DAYS.match(text) or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidInput(f"{label} must be a whole number of days from 1 to {MAX_DAYS}")
    return int(text)


@router.post(f"{PRIVACY}/retention")
async def save_retention(request: Request, user: ShopperAction) -> Response:
    """Set how long palm data (after last use) and trips are kept; nothing changes on error.

    An empty trip field keeps trips as long as needed; out-of-range values come back
    with the reason and change nothing.
    """
    form = await request.form()
    trip_text = form_text(form, "trip_days", 12)
    try:
        palm_days = _days(form_text(form, "palm_days", 12), "Keep palm data after last use")
        trip_days = _days(trip_text, "Keep trips (or leave it empty)") if trip_text else None
        privacy_of(request).retention.set_periods(
            shopper_id=user.shopper_id, palm_days=palm_days, trip_days=trip_days)
    except StorefrontError as exc:
        return redirect(request, PRIVACY, message=exc.reason, kind="error")
    trips = "as long as needed" if trip_days is None else plural(trip_days, "day")
    return redirect(request, PRIVACY, message=(
        f"Saved: palm data is kept {plural(palm_days, 'day')} after its last use; "
        f"trips are kept {trips}."))


@router.post(f"{PRIVACY}/recommendations")
async def save_recommendations(request: Request, user: ShopperAction) -> Response:
    """Opt out of (or back into) recommendations based on my shopping history."""
    form = await request.form()
    opt_out = form_text(form, "opt_out", 8) == "yes"
    privacy_of(request).consents.set_recommendations_opt_out(shopper_id=user.shopper_id,
                                                             opt_out=opt_out)
    return redirect(request, PRIVACY, message=(
        "Saved: your shopping history will not be used for recommendations." if opt_out else
        "Saved: your shopping history may be used for recommendations."))


@router.post(f"{PRIVACY}/consent")
def give_consent(request: Request, user: ShopperAction) -> Response:
    """Record my consent to palm identification with the text shown on the page."""
    privacy_of(request).consents.give(shopper_id=user.shopper_id, purpose=PALM_PURPOSE,
                                      text_version=CURRENT_TEXT_VERSION)
    return redirect(request, PRIVACY, message=(
        "Consent recorded. You can now enrol a palm at the enrolment kiosk."))


@router.get(f"{PRIVACY}/consent/withdraw")
def confirm_withdraw(request: Request, user: ShopperPage) -> Response:
    """Ask before withdrawing consent: say that the palm data is deleted with it."""
    count = len(privacy_of(request).portal.palms(user.shopper_id))
    return render(request, "portal/consent_withdraw.html", {"nav": "privacy", "count": count},
                  user=user)


@router.post(f"{PRIVACY}/consent/withdraw")
def withdraw_consent(request: Request, user: ShopperAction) -> Response:
    """Withdraw my palm consent: every palm of mine is deleted at once."""
    p = privacy_of(request)
    palms = len(p.portal.palms(user.shopper_id))
    withdrawn = p.consents.withdraw(shopper_id=user.shopper_id, purpose=PALM_PURPOSE)
    first = "Consent withdrawn" if withdrawn else "No consent was recorded"
    return redirect(request, PRIVACY, message=f"{first}; {plural(palms, 'palm')} deleted.")
