"""Data-subject requests handled by staff are for shoppers without a login.

A shopper who signed up (a ``shopper_accounts`` row) exports and erases their data
themselves in the portal (``/portal/privacy``, ``POST /me/exports``, ``DELETE /me``);
``/staff/privacy/shoppers/{id}`` refuses them (least privilege: a manager has no need to
read a portal user's e-mail, sessions, consents and entry codes, or to erase their
account). The command line (an operator with database access) may still act for them with
``--has-login-ok``, recorded in the audit entry. A shopper gets a login only when created
by sign-up, so the check cannot be overtaken by a later sign-up of the same shopper.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from storefront.db.models import ShopperAccount
from storefront.errors import Conflict

OVERRIDE_NOTE = {"has_login": True, "override": "--has-login-ok"}
"""Audit details of a command-line request made for a shopper who has a login."""


class ShopperHasLogin(Conflict):
    """A staff data-subject request for a shopper with a login (409)."""

    code = "shopper_has_login"


def has_login(sessions: sessionmaker[Session], shopper_id: str) -> bool:
    """True when ``shopper_id`` has a login account (signed up)."""
    with sessions() as db:
        return db.get(ShopperAccount, shopper_id) is not None


def refuse_login_holder(sessions: sessionmaker[Session], shopper_id: str) -> None:
    """Raise ShopperHasLogin when ``shopper_id`` has a login account (an unknown shopper
    passes: the request itself answers 404)."""
    if has_login(sessions, shopper_id):
        raise ShopperHasLogin(
            f"shopper {shopper_id!r} has a login account: they export and delete their data "
            "themselves in the portal (Privacy page, POST /me/exports, DELETE /me); staff "
            "data-subject requests are only for shoppers registered without a login")
