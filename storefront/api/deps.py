"""FastAPI dependency aliases: the wired services, taken from the app's container."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from storefront.bootstrap import Container


def get_container(request: Request) -> Container:
    """The container built at start-up by :func:`storefront.api.app.create_app`."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]
