"""An app that builds its own container (``storefront serve``) freezes what start-up built
out of the cyclic garbage collector, so full collections do not stall requests; an app
given a container (tests, the demo) leaves the collector alone."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import bootstrap
from storefront.settings import Settings


def test_only_an_app_owning_its_container_freezes_the_startup_objects(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "store")
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings=settings)) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # given back at shutdown
    container = bootstrap(settings)
    try:
        with TestClient(create_app(container)) as client:
            assert client.get("/health").status_code == 200
            assert gc.get_freeze_count() == 0
    finally:
        container.close()
