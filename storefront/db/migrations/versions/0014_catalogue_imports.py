"""The stores imported into the catalogue (``catalogue_imports``: ``chain:store`` and when),
so an import of another store is refused even when the earlier one brought no promotions
(the promotions' ``source`` was the only record before). Filled from the promotions'
sources of earlier imports.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# chain:store as catalog import writes it (ids of 1-20 letters, digits, '.', '_', '-').
IMPORTED = r"^[A-Za-z0-9._-]{1,20}:[A-Za-z0-9._-]{1,20}$"


def upgrade() -> None:
    """Create the table and record the stores whose promotions are in the catalogue."""
    op.create_table(
        "catalogue_imports",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    bind = op.get_bind()
    sources = bind.execute(sa.text("SELECT DISTINCT source FROM promotions")).scalars().all()
    import re
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows = [{"source": s, "imported_at": now} for s in sources if re.fullmatch(IMPORTED, s)]
    if rows:
        bind.execute(sa.text("INSERT INTO catalogue_imports (source, imported_at) "
                             "VALUES (:source, :imported_at)"), rows)


def downgrade() -> None:
    """Drop the table (the promotions' sources stay the only record, as before)."""
    op.drop_table("catalogue_imports")
