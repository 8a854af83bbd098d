"""Migration 0014 (the stores imported into the catalogue): the stores known before by
their promotions' source are recorded on the way up, and the table goes on the way down
(SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from storefront.db.engine import make_engine
from storefront.db.migrate import alembic_config, current_revision, head_revision


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    url = (f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("postgres_url")))
    made = make_engine(url)
    request.addfinalizer(made.dispose)
    return made


def test_upgrade_records_the_stores_of_earlier_imports(engine: sa.Engine) -> None:
    command.upgrade(alembic_config(engine), "0013")
    with engine.begin() as db:
        for pid, source in (("7290027600007:413:P1", "7290027600007:413"),
                            ("7290027600007:413:P2", "7290027600007:413"),
                            ("demo-1", "builtin")):  # not an imported store's source
            db.execute(sa.text(
                "INSERT INTO promotions (id, source, kind, description, min_quantity_milli,"
                " club_only)"
                " VALUES (:id, :source, 'percent', 'x', 1000, false)"),
                {"id": pid, "source": source})
    command.upgrade(alembic_config(engine), "0014")
    with engine.connect() as db:
        assert db.execute(sa.text("SELECT source FROM catalogue_imports")).scalars().all() \
            == ["7290027600007:413"]
    command.downgrade(alembic_config(engine), "0013")
    assert current_revision(engine) == "0013"
    assert "catalogue_imports" not in sa.inspect(engine).get_table_names()
    command.upgrade(alembic_config(engine), "head")
    assert current_revision(engine) == head_revision()  # 0014 and any later revision
