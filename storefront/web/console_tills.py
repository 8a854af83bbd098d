"""Console pages of the tills: open a cash drawer, its X report, and its Z report.

As in ``storefront.api.routers.staff``: checkout staff open drawers and read X reports;
only a manager closes a drawer (Z report). Amounts are typed in major units.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from storefront.api.routers.staff import TillIdPath
from storefront.errors import NotFound
from storefront.web import console_forms as forms
from storefront.web.auth import CheckoutAction, CheckoutPage, ManagerAction
from storefront.web.console_forms import ACTION_ERRORS, Posted, container_of, failed
from storefront.web.render import money, redirect, render

router = APIRouter(include_in_schema=False)
BASE = "/console/tills"


@router.get(BASE)
def tills_page(request: Request, user: CheckoutPage,
               till: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """The drawer forms; with ``till`` (the X report form) it goes to that till's X report."""
    if till is not None:
        try:
            return redirect(request, f"{BASE}/{forms.check_id(till.strip(), 'Till')}")
        except ACTION_ERRORS as exc:
            return failed(request, BASE, exc)
    return render(request, "console/tills.html", {"nav": "tills"}, user=user)


@router.post(BASE + "/open")
def open_drawer(request: Request, user: CheckoutAction, form: Posted) -> Response:
    """Open a cash drawer with a float; then show its X report."""
    c = container_of(request)
    try:
        till_id = forms.ident(form, "till", "Till") or ""
        float_minor = forms.amount_minor(form, "float", "Float", allow_zero=True)
        c.till.open_drawer(till_id=till_id, staff_id=user.id, float_minor=float_minor)
    except ACTION_ERRORS as exc:
        return failed(request, BASE, exc)
    return redirect(request, f"{BASE}/{till_id}", message=f"Drawer opened at {till_id} with a "
                    f"float of {money(float_minor, c.settings.currency)}.")


@router.get(BASE + "/{till_id}")
def x_report(till_id: TillIdPath, request: Request, user: CheckoutPage) -> Response:
    """The X report: running totals of the drawer open at the till (it stays open)."""
    try:
        report = container_of(request).till.x_report(till_id=till_id)
    except NotFound as exc:
        return failed(request, BASE, exc)
    return render(request, "console/drawer_report.html",
                  {"nav": "tills", "report": report}, user=user)


@router.post(BASE + "/close")
def close_drawer(request: Request, user: ManagerAction, form: Posted) -> Response:
    """Z report (managers): close the drawer, compare expected and counted cash.

    The drawer is closed by this request, so the report is shown in its answer; sending
    the form again finds no open drawer and changes nothing.
    """
    try:
        till_id = forms.ident(form, "till", "Till") or ""
        counted = forms.amount_minor(form, "counted", "Counted cash", allow_zero=True)
        report = container_of(request).till.close_drawer(till_id=till_id, staff_id=user.id,
                                                         counted_minor=counted)
    except ACTION_ERRORS as exc:
        return failed(request, BASE, exc)
    return render(request, "console/drawer_report.html",
                  {"nav": "tills", "report": report}, user=user)
