"""Pages of /kiosk: palm enrolment by the signed-in shopper at the store's kiosk.

The page shows the consent text (``CONSENT_TEXTS[CURRENT_TEXT_VERSION]``), a consent
checkbox and a file input for at least ``MIN_CAPTURES`` photos of the same palm. The
post calls ``ShopperService.enrol_palm`` (as the JSON API does, off the event loop)
with the consent version when ticked (recorded as given by ``shopper:<id>`` in the same
transaction as the templates: a refused enrolment records no consent); the result page
lists every capture as accepted or refused with the reason, and whether the palm was
enrolled (200) or why not (422). A kiosk is shared: after an enrolment attempt the
shopper is signed out, and the form shows who is signed in.
Fewer than ``MIN_CAPTURES`` files, an empty or oversized file, or no consent (none
ticked and none recorded) store nothing and show the form again with the reason.
A form sent twice is refused the second time (the palm is already enrolled).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from identity.errors import EnrolmentError, IdentityError, InvalidImageError
from storefront.api.errors import error_code, status_for
from storefront.api.uploads import MAX_IMAGE_BYTES
from storefront.errors import InvalidInput, StorefrontError
from storefront.privacy.consent import CONSENT_TEXTS, CURRENT_TEXT_VERSION
from storefront.web.auth import (
    SHOPPER_COOKIE,
    SHOPPER_PATH,
    ShopperAction,
    ShopperPage,
    ShopperUser,
    clear_session_cookie,
    form_text,
)
from storefront.web.portal_common import container_of, privacy_of
from storefront.web.render import redirect, render

router = APIRouter(include_in_schema=False)
ENROL = "/kiosk/enrol"
MIN_CAPTURES = 3
MAX_CAPTURES = 20
_CODE_PREFIX = re.compile(r"^[a-z_]+: ")


@dataclass(frozen=True)
class CaptureView:
    """One uploaded capture on the result page: file name, accepted, and why not."""

    file_name: str
    accepted: bool
    reason: str


def _readable(reason: str) -> str:
    """An identity reason without its machine code (``failure_to_acquire: too dark``)."""
    return _CODE_PREFIX.sub("", reason, count=1)


def _who(request: Request, user: ShopperUser) -> str:
    """The signed-in shopper as the kiosk shows it: name and e-mail."""
    name = container_of(request).shoppers.get(user.shopper_id).display_name
    email = privacy_of(request).accounts.email_of(user.shopper_id)
    return f"{name} ({email})" if email else name


def _form(request: Request, user: ShopperUser, *, error: str | None = None,
          code: str | None = None, status_code: int = 200) -> Response:
    return render(request, "kiosk/enrol.html", {"who": _who(request, user),
        "consent_text": CONSENT_TEXTS[CURRENT_TEXT_VERSION],
        "consent_version": CURRENT_TEXT_VERSION, "min_captures": MIN_CAPTURES,
        "max_captures": MAX_CAPTURES, "max_mib": MAX_IMAGE_BYTES // (1024 * 1024),
        "error": error, "error_code": code, "nav": "enrol"}, user=user,
        status_code=status_code)


async def _read(upload: UploadFile) -> bytes:
    """The bytes of one uploaded capture; InvalidInput when empty or over the size limit."""
    data = await upload.read(MAX_IMAGE_BYTES + 1)
    if not data:
        raise InvalidInput(f"the file {upload.filename!r} is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"the file {upload.filename!r} is larger than "
                           f"{MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    return data


@router.get("/kiosk")
def kiosk_home(request: Request) -> Response:
    """The kiosk's start page is the enrolment page."""
    return redirect(request, ENROL)


@router.get(ENROL)
def enrol_page(request: Request, user: ShopperPage) -> Response:
    """The consent text, the consent checkbox and the capture upload."""
    return _form(request, user)


@router.post(ENROL)
async def enrol(request: Request, user: ShopperAction) -> Response:
    """Enrol the uploaded captures; the result lists each capture's outcome."""
    form = await request.form()
    uploads = [f for f in form.getlist("captures")
               if isinstance(f, UploadFile) and (f.filename or f.size)]
    if not MIN_CAPTURES <= len(uploads) <= MAX_CAPTURES:
        return _form(request, user, status_code=422, code="invalid_input", error=(
            f"Please choose {MIN_CAPTURES} to {MAX_CAPTURES} photos of the same palm "
            f"({len(uploads)} chosen); nothing was stored."))
    try:
        images = [await _read(upload) for upload in uploads]
    except InvalidInput as exc:
        return _form(request, user, status_code=422, code=exc.code,
                     error=f"{exc.reason[:1].upper()}{exc.reason[1:]}; nothing was stored.")
    names = [(u.filename or f"capture {i}")[:120] for i, u in enumerate(uploads, start=1)]
    c = container_of(request)
    consent = form_text(form, "consent", 8) == "yes"
    try:
        result = await run_in_threadpool(
            c.shoppers.enrol_palm, shopper_id=user.shopper_id, images=images,
            actor=f"shopper:{user.shopper_id}", store_id=c.settings.store_id,
            consent_text_version=CURRENT_TEXT_VERSION if consent else None,
            min_captures=MIN_CAPTURES)
    except (EnrolmentError, InvalidImageError) as exc:
        # The refusal carries each capture's verdict (identity examined them all).
        captures = [CaptureView(n, ok, _readable(why))
                    for n, (ok, why) in zip(names, exc.outcomes, strict=False)]
        reason = exc.reason if any(c.accepted for c in captures) or not captures else (
            f"none of the {len(images)} captures shows a usable palm; the reason for each "
            "is below")
        return _signed_out(request, user, _result(
            request, None, captures, refused=(exc.code, reason), templates=0,
            consent_recorded=False))  # recorded only with an enrolment (one transaction)
    except (IdentityError, StorefrontError) as exc:
        return _form(request, user, status_code=status_for(exc), code=error_code(exc),
                     error=exc.reason)
    captures = [CaptureView(n, o.accepted, _readable(o.reason))
                for n, o in zip(names, result.captures, strict=True)]
    return _signed_out(request, user, _result(request, None, captures, refused=None,
                                              templates=len(result.template_ids),
                                              consent_recorded=True))


def _signed_out(request: Request, user: ShopperUser, response: Response) -> Response:
    """A kiosk is shared: after an enrolment attempt, enrolled or refused, the shopper is
    signed out, so the next person cannot add a palm to this account."""
    privacy_of(request).accounts.logout(user.token)
    clear_session_cookie(response, name=SHOPPER_COOKIE, path=SHOPPER_PATH)
    return response


def _result(request: Request, user: ShopperUser | None, captures: list[CaptureView], *,
            refused: tuple[str, str] | None, templates: int,
            consent_recorded: bool) -> Response:
    """The result page: 200 when enrolled (``user`` None: signed out), 422 with
    ``refused`` = (error code, reason)."""
    context: dict[str, Any] = {"nav": "enrol", "captures": captures,
                               "enrolled": refused is None, "templates": templates,
                               "code": refused[0] if refused else None,
                               "reason": refused[1] if refused else None,
                               "consent_recorded": consent_recorded}
    return render(request, "kiosk/result.html", context, user=user,
                  status_code=200 if refused is None else 422)
