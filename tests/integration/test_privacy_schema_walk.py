"""Export completeness, walked from the migrated database schema (a new table cannot be
forgotten): every table linked to a shopper is exported or excluded with a reason.

"Linked" starts at tables with a shopper-id-like column and follows the linking columns
downwards: a table is linked when one of its columns refers to the key of a linked
table, by a declared foreign key or by the naming rule of this schema (``session_id``,
``original_receipt_id`` -> ``receipts``, ``payment_id`` -> ``payments``, ...). So tables
keyed by a trip, receipt, payment, tender or dispute of the shopper are caught, not
only those holding a shopper id. Audit entries are checked the same way: every audit
subject kind written by the code (``session:<id>``, ``receipt:<id>``, ...) that names a
linked table must be exported.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from storefront.bootstrap import bootstrap
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.db.models import FrozenCart
from storefront.privacy.export import AUDIT_SUBJECTS, EXCLUDED, EXPORTED, HIDDEN_COLUMNS, collect
from storefront.settings import Settings

SHOPPER_COLUMN = re.compile(r"(^|_)(shopper|subject|customer|member|person)(_id)?$")
SOURCE = Path(__file__).resolve().parents[2] / "storefront"


class Schema:
    """Columns, single-column keys and declared foreign keys of the migrated schema."""

    def __init__(self, tmp_path: Path) -> None:
        engine = make_engine(f"sqlite:///{tmp_path / 'walk.db'}")
        try:
            upgrade(engine)
            inspector = sa.inspect(engine)
            names = [t for t in inspector.get_table_names() if t != "alembic_version"]
            self.columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in names}
            self.keys = {t: k[0] for t in names
                         if len(k := inspector.get_pk_constraint(t)["constrained_columns"]) == 1}
            self.foreign = {(t, col, fk["referred_table"]) for t in names
                            for fk in inspector.get_foreign_keys(t)
                            for col in fk["constrained_columns"]}
        finally:
            engine.dispose()

    def ref_names(self, table: str) -> set[str]:
        """How a column names ``table``'s key: its singular (``receipt``), and the last
        word's singular when no table is called that (``shopping_sessions`` -> ``session``)."""
        singular = table[:-1] if table.endswith("s") else table
        names = {singular}
        last = singular.rsplit("_", 1)[-1]
        if f"{last}s" not in self.columns and last not in self.columns:
            names.add(last)
        return names

    def refers(self, table: str, column: str, target: str) -> bool:
        """``table.column`` refers to ``target``'s key."""
        if (table, column, target) in self.foreign:
            return True
        return target in self.keys and table != target and any(
            column == f"{n}_id" or column.endswith(f"_{n}_id") for n in self.ref_names(target))

    def linked(self) -> dict[str, set[str]]:
        """Tables linked to a shopper -> the columns linking them ('' for the roots)."""
        found = {t: {c for c in cols if SHOPPER_COLUMN.search(c)}
                 for t, cols in self.columns.items() if any(SHOPPER_COLUMN.search(c) for c in cols)}
        found["shoppers"] = {"id"}
        grew = True
        while grew:
            grew = False
            for table, cols in self.columns.items():
                via = {c for c in cols for target in list(found) if self.refers(table, c, target)}
                if via - found.get(table, set()):
                    found.setdefault(table, set()).update(via)
                    grew = True
        return found


def test_every_table_linked_to_a_shopper_is_exported(tmp_path: Path) -> None:
    linked = Schema(tmp_path).linked()
    # the walk reaches tables keyed by trip, receipt, payment and dispute, not only by shopper
    assert {"receipts", "payments", "palm_templates", "biometric_consents", "tenders",
            "staffed_frozen_carts", "payment_operations", "disputes", "amended_receipts",
            "cart_corrections", "age_checks", "cart_events"} <= set(linked)
    assert not {"products", "devices", "cash_drawers", "staff_accounts"} & set(linked)
    missing = sorted(set(linked) - set(EXPORTED) - set(EXCLUDED))
    assert missing == [], f"tables linked to a shopper missing from the export: {missing}"


def test_each_linked_table_is_exported_through_its_linking_column(tmp_path: Path) -> None:
    linked = Schema(tmp_path).linked()
    for table, via in linked.items():
        if table in EXPORTED and table != "audit_log":
            columns = {column for column, _key in EXPORTED[table]}
            assert columns & via, (table, via, columns)


def test_every_audit_subject_kind_naming_a_linked_record_is_exported(tmp_path: Path) -> None:
    schema = Schema(tmp_path)
    linked = schema.linked()
    code = "\n".join(p.read_text(encoding="utf-8") for p in SOURCE.rglob("*.py"))
    kinds = set(re.findall(r'f"([a-z_]+):\{', code))
    assert {"shopper", "session", "receipt", "tender", "dispute"} <= kinds
    naming = {kind for kind in kinds for table in linked if table in schema.keys
              and (kind in schema.ref_names(table) or f"{kind}s" == table)}
    assert naming - set(AUDIT_SUBJECTS) == set(), naming - set(AUDIT_SUBJECTS)
    assert ("subject", "audit_subject") in EXPORTED["audit_log"]
    assert ("actor", "audit_actor") in EXPORTED["audit_log"]


def test_export_map_names_real_tables_and_columns(tmp_path: Path) -> None:
    schema = Schema(tmp_path)
    for table, links in EXPORTED.items():
        assert table in schema.columns, table
        for column, _key in links:
            assert column in schema.columns[table], (table, column)
    for table, hidden in HIDDEN_COLUMNS.items():
        assert hidden <= schema.columns[table], table
    for table, reason in EXCLUDED.items():
        assert table in schema.columns and len(reason) > 20, table


def test_export_holds_what_is_linked_through_trips_and_receipts(tmp_path: Path) -> None:
    """Rows and audit entries reached only through the shopper's trip or receipt are in
    the export; another shopper's are not."""
    c = bootstrap(Settings(data_dir=tmp_path / "store"))
    try:
        ann = c.shoppers.register(display_name="Ann", payment_token="tok_ann").id
        bob = c.shoppers.register(display_name="Bob", payment_token="tok_bob").id
        trip, other = (c.gates.open_session(shopper_id=s, entry_method="app") for s in (ann, bob))
        with c.db.begin() as db:
            for session_id in (trip, other):
                db.add(FrozenCart(session_id=session_id, currency="GBP", total_minor=5,
                                         lines=[], age_restricted=False, corrections=0,
                                         priced_at=datetime.now(UTC), frozen_by="staff-1"))
        for session_id in (trip, other):
            c.audit.record(actor="staff:m1", action="correction", subject=f"session:{session_id}")
        c.audit.record(actor="reconcile", action="tender_settled", subject=f"session:{trip}")
        c.audit.record(actor=f"shopper:{ann}", action="refund", subject="receipt:rct_elsewhere")
        with c.db() as db:
            data = collect(db, ann)
    finally:
        c.close()
    assert [r["session_id"] for r in data["staffed_frozen_carts"]] == [trip]
    entries = {(e["action"], e["subject"]) for e in data["audit_log"]}
    assert entries == {("correction", f"session:{trip}"), ("tender_settled", f"session:{trip}"),
                       ("refund", "receipt:rct_elsewhere")}
