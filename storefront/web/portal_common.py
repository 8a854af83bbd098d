"""Helpers shared by the shopper portal pages (``storefront.web.portal_*``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from storefront.api.routers.auth import get_privacy
from storefront.api.schemas import ID_PATTERN
from storefront.bootstrap import Container
from storefront.privacy.wiring import Privacy

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
"""A palm, receipt or export id in a page path (404 page for anything else)."""


def container_of(request: Request) -> Container:
    """The app's service container."""
    container: Container = request.app.state.container
    return container


def privacy_of(request: Request) -> Privacy:
    """The app's privacy services (the same objects the ``/me`` API uses)."""
    return get_privacy(request, container_of(request))


def plural(count: int, word: str) -> str:
    """``1 palm`` / ``2 palms``."""
    return f"{count} {word}{'' if count == 1 else 's'}"
