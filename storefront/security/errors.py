"""Typed security errors (mapped to HTTP 401 and 403 by ``storefront.api.errors``)."""

from __future__ import annotations

from storefront.errors import StorefrontError


class AuthenticationRequired(StorefrontError):
    """No credentials, or credentials that do not verify (wrong, expired, replayed)."""

    code = "unauthenticated"


class PermissionDenied(StorefrontError):
    """The authenticated staff member or device may not do this (role, limit, identity)."""

    code = "forbidden"
