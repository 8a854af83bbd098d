"""Export completeness: every table that holds a shopper id is exported or excluded with a
reason, walked from the migrated database schema (a new table cannot be forgotten)."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.privacy.export import EXCLUDED, EXPORTED, HIDDEN_COLUMNS

SHOPPER_COLUMN = re.compile(r"(^|_)(shopper|subject|customer|member|person)(_id)?$")


def _schema(tmp_path: Path) -> dict[str, set[str]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'walk.db'}")
    try:
        upgrade(engine)
        inspector = sa.inspect(engine)
        return {t: {c["name"] for c in inspector.get_columns(t)}
                for t in inspector.get_table_names() if t != "alembic_version"}
    finally:
        engine.dispose()


def test_every_table_with_a_shopper_id_is_exported(tmp_path: Path) -> None:
    schema = _schema(tmp_path)
    holding = {t for t, cols in schema.items() if any(SHOPPER_COLUMN.search(c) for c in cols)}
    holding.add("shoppers")
    assert {"receipts", "payments", "palm_templates", "biometric_consents"} <= holding
    missing = sorted(holding - set(EXPORTED) - set(EXCLUDED))
    assert missing == [], f"tables holding a shopper id missing from the export: {missing}"


def test_export_map_names_real_tables_and_columns(tmp_path: Path) -> None:
    schema = _schema(tmp_path)
    for table, (column, _key) in EXPORTED.items():
        assert table in schema, table
        assert column in schema[table], (table, column)
    for table, hidden in HIDDEN_COLUMNS.items():
        assert hidden <= schema[table], table
    for table, reason in EXCLUDED.items():
        assert table in schema and len(reason) > 20, table
