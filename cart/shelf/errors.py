"""Typed errors of the shelf-weight subpackage (subclasses of :class:`cart.errors.CartError`)."""

from __future__ import annotations

from cart.errors import CartError


class ShelfDataError(CartError):
    """Weight readings, a planogram or a ground-truth file are malformed.

    Raised before anything is inferred, so bad input never produces a pick.
    """

    code = "shelf_data_error"
