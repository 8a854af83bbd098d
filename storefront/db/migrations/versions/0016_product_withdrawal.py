"""Products withdrawn from sale (``products.withdrawn_at``): a catalogue import with
``--replace-store`` kept the previous store's products that the new store's price file does
not list at the previous store's price, so a shopper could be charged another store's
price. Such products are now withdrawn (the time, UTC) instead of deleted (carts, receipts
and disputes name products by code): pricing refuses them and the exit sends the cart to
the staffed checkout. Rows written before: NULL (on sale, as they were).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column (NULL: every product stays on sale)."""
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop the column. Refused (RuntimeError, nothing changed) while a product is
    withdrawn: revision 0015 would sell it again at the price it was withdrawn with."""
    withdrawn = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM products WHERE withdrawn_at IS NOT NULL")).scalar_one()
    if int(withdrawn or 0):
        raise RuntimeError(
            f"cannot downgrade below revision 0016: {withdrawn} product(s) are withdrawn "
            f"from sale, which revision 0015 would sell at the price they were withdrawn "
            f"with; put them back on sale with PUT /products/{{code}} first; nothing was "
            f"changed")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("withdrawn_at")
