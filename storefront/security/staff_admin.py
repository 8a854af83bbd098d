"""Staff account changes: disable, enable, reset the password or TOTP, change the role.

Every change is made by an ``actor`` (``staff:<id>`` for an admin over the API, ``cli``
for ``storefront staff ...``) and recorded in the audit log in the same transaction
(action ``staff_changed``, subject ``staff:<id>``, details: what changed and how many
tokens were revoked; never a password or secret). Every change except enabling revokes
all of the member's bearer tokens at once, so a member signed in (API or console) is
refused on the next request; the token check also refuses any token of a disabled
account.

Rules: nobody disables or changes the role of their own account; the last enabled admin
is neither disabled nor given another role (Conflict, 409), so the staff accounts always
keep an administrator. A role change to manager or admin issues a TOTP secret (shown
once) when the account has none; one to cashier or auditor drops it. A change that
changes nothing (disabling a disabled account, the same role) revokes nothing and is
not audited.

Concurrency: each change locks the enabled admins' rows and then the member's row
(PostgreSQL ``FOR UPDATE``, in id order; on SQLite a first no-op UPDATE takes the
database's write lock), so two admins disabling each other at once leave one enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import StaffAccount, StaffToken
from storefront.errors import Conflict, NotFound
from storefront.security.audit import Audit, NewEntry
from storefront.security.staff import MFA_ROLES, StaffService, check_role, hash_password

ACTION = "staff_changed"


@dataclass(frozen=True)
class StaffChange:
    """An account after a change: ``changed`` False when it already was so; how many
    tokens were revoked; a new TOTP secret and its URI (shown once) when one was issued."""

    staff_id: str
    role: str
    disabled: bool
    changed: bool
    tokens_revoked: int
    totp_secret: str | None = None
    totp_uri: str | None = None


@dataclass(frozen=True)
class StaffView:
    """One account as listed: id, role, whether it is disabled and has a TOTP secret."""

    staff_id: str
    role: str
    disabled: bool
    has_totp: bool


Change = Callable[[StaffAccount, list[str]], dict[str, Any] | None]
"""Edits the locked row (given the enabled admins' ids); returns the audit details of
what changed, or None when nothing did."""


class StaffAdmin:
    """Changes staff accounts (see the module docstring)."""

    def __init__(self, sessions: sessionmaker[Session], staff: StaffService, audit: Audit,
                 clock: Clock) -> None:
        self._db = sessions
        self._staff = staff
        self._audit = audit
        self._clock = clock

    def get(self, staff_id: str) -> StaffView:
        """The account ``staff_id``; raises NotFound."""
        with self._db() as db:
            row = db.get(StaffAccount, staff_id)
            if row is None:
                raise NotFound(f"no staff account {staff_id!r}")
            return _view(row)

    def accounts(self) -> list[StaffView]:
        """Every account, by id."""
        with self._db() as db:
            return [_view(r) for r in db.scalars(sa.select(StaffAccount)
                                                 .order_by(StaffAccount.id))]

    def disable(self, *, actor: str, staff_id: str) -> StaffChange:
        """Disable the account and revoke its tokens. Raises NotFound, Conflict (your own
        account, or the last enabled admin)."""
        _not_self(actor, staff_id, "disable")

        def change(row: StaffAccount, admins: list[str]) -> dict[str, Any] | None:
            if row.disabled_at is not None:
                return None
            _not_last_admin(row, admins, "disabled")
            row.disabled_at = self._clock()
            return {"change": "disabled"}

        return self._apply(actor, staff_id, change)

    def enable(self, *, actor: str, staff_id: str) -> StaffChange:
        """Enable a disabled account (it signs in afresh). Raises NotFound."""

        def change(row: StaffAccount, _admins: list[str]) -> dict[str, Any] | None:
            if row.disabled_at is None:
                return None
            row.disabled_at = None
            return {"change": "enabled"}

        return self._apply(actor, staff_id, change, revoke=False)

    def reset_password(self, *, actor: str, staff_id: str, password: str) -> StaffChange:
        """Set a new password (12 to 1024 characters) and revoke the tokens. Raises
        InvalidInput (length), NotFound."""
        password_hash = hash_password(password)  # argon2 before any lock is held

        def change(row: StaffAccount, _admins: list[str]) -> dict[str, Any]:
            row.password_hash = password_hash
            return {"change": "password_reset"}

        return self._apply(actor, staff_id, change)

    def reset_totp(self, *, actor: str, staff_id: str) -> StaffChange:
        """Issue a new TOTP secret (returned once; the old one stops working) and revoke
        the tokens. Raises NotFound, Conflict (a role that signs in without a code),
        KeyUnavailable."""
        secret, sealed = self._staff.new_totp_secret(staff_id)

        def change(row: StaffAccount, _admins: list[str]) -> dict[str, Any]:
            if row.role not in MFA_ROLES:
                raise Conflict(f"role {row.role} signs in without a one-time code; "
                               "there is no TOTP secret to reset")
            row.totp_secret_sealed, row.totp_last_step = sealed, None
            return {"change": "totp_reset"}

        done = self._apply(actor, staff_id, change)
        return replace(done, totp_secret=secret,
                       totp_uri=self._staff.totp_uri(staff_id, secret))

    def change_role(self, *, actor: str, staff_id: str, role: str) -> StaffChange:
        """Give the account ``role`` and revoke its tokens; a new TOTP secret is issued
        (returned once) when manager or admin needs one. Raises InvalidInput (role),
        NotFound, Conflict (your own account, the last enabled admin), KeyUnavailable."""
        check_role(role)
        _not_self(actor, staff_id, "change the role of")
        secret, sealed = self._staff.new_totp_secret(staff_id) if role in MFA_ROLES \
            else (None, None)
        issued: list[str] = []

        def change(row: StaffAccount, admins: list[str]) -> dict[str, Any] | None:
            if row.role == role:
                return None
            _not_last_admin(row, admins, "given another role")
            before, row.role = row.role, role
            if role not in MFA_ROLES:
                row.totp_secret_sealed, row.totp_last_step = None, None
            elif row.totp_secret_sealed is None and secret is not None:
                row.totp_secret_sealed, row.totp_last_step = sealed, None
                issued.append(secret)
            return {"change": "role", "from": before, "to": role, "totp_issued": bool(issued)}

        done = self._apply(actor, staff_id, change)
        if not issued:
            return done
        return replace(done, totp_secret=issued[0],
                       totp_uri=self._staff.totp_uri(staff_id, issued[0]))

    def _apply(self, actor: str, staff_id: str, change: Change, *,
               revoke: bool = True) -> StaffChange:
        """Lock, change, revoke the tokens and audit, in one transaction."""
        with self._db.begin() as db:
            row, admins = _lock(db, staff_id)
            details = change(row, admins)
            if details is None:
                return StaffChange(row.id, row.role, row.disabled_at is not None, False, 0)
            revoked = self._revoke(db, staff_id) if revoke else 0
            self._audit.record_in(db, [NewEntry(actor, ACTION, f"staff:{staff_id}",
                                                details | {"tokens_revoked": revoked})])
            return StaffChange(row.id, row.role, row.disabled_at is not None, True, revoked)

    def _revoke(self, db: Session, staff_id: str) -> int:
        """Revoke every live token of ``staff_id``; returns how many."""
        now = self._clock()
        done = db.execute(sa.update(StaffToken).where(
            StaffToken.staff_id == staff_id, StaffToken.revoked_at.is_(None),
            StaffToken.expires_at > now).values(revoked_at=now)
            .execution_options(synchronize_session=False))
        return int(getattr(done, "rowcount", 0) or 0)


def _lock(db: Session, staff_id: str) -> tuple[StaffAccount, list[str]]:
    """The member's row and the enabled admins' ids, locked for this transaction.
    Raises NotFound."""
    if db.get_bind().dialect.name == "sqlite":  # the write lock, before anything is read
        db.execute(sa.update(StaffAccount).where(StaffAccount.id == staff_id)
                   .values(role=StaffAccount.role)
                   .execution_options(synchronize_session=False))
    admins = list(db.scalars(sa.select(StaffAccount.id).where(
        StaffAccount.role == "admin", StaffAccount.disabled_at.is_(None))
        .order_by(StaffAccount.id).with_for_update()))
    row = db.get(StaffAccount, staff_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no staff account {staff_id!r}")
    return row, admins


def _not_self(actor: str, staff_id: str, what: str) -> None:
    if actor == f"staff:{staff_id}":
        raise Conflict(f"you cannot {what} your own account; another admin must")


def _not_last_admin(row: StaffAccount, admins: list[str], what: str) -> None:
    if row.role == "admin" and admins == [row.id]:
        raise Conflict(f"{row.id} is the last enabled admin and cannot be {what}; "
                       "add or enable another admin first")


def _view(row: StaffAccount) -> StaffView:
    return StaffView(row.id, row.role, row.disabled_at is not None,
                     row.totp_secret_sealed is not None)
