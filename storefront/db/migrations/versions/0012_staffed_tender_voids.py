"""Staffed checkout: a tender voided before the close (cash paid back out of a drawer,
a card refunded through the processor), with who voided it, when and why; a closed cash
drawer's whole Z report as given at close (``cash_drawers.z_report``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the ``tenders.void_*`` columns and ``tenders.voided_by``/``voided_at`` (NULL:
    the tender was never voided; every tender taken before), and
    ``cash_drawers.z_report`` (NULL: open, or closed before this revision: its Z report
    is recomputed then)."""
    with op.batch_alter_table("tenders") as batch:
        batch.add_column(sa.Column("void_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("void_reason", sa.String(300), nullable=True))
        batch.add_column(sa.Column("voided_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("voided_at", TS, nullable=True))
        batch.add_column(sa.Column("void_refund_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("void_drawer_id", sa.String(64), nullable=True))
    with op.batch_alter_table("cash_drawers") as batch:
        batch.add_column(sa.Column("z_report", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the void columns and ``cash_drawers.z_report``.

    Refused (RuntimeError, nothing changed) while any tender is ``voided`` or
    ``voiding``: revision 0011 cannot hold them (a voided card tender would read as
    captured although refunded, a voided cash tender's payout would vanish from its
    drawer's reports). Finish or settle those tenders' data by hand first. The stored Z
    reports are dropped: closed drawers are recomputed from ``expected_minor`` again.
    """
    voids = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM tenders WHERE void_state IS NOT NULL")).scalar_one()
    if int(voids or 0):
        raise RuntimeError(
            f"cannot downgrade below revision 0012: {voids} tender(s) are voided or being "
            f"voided, which revision 0011 cannot record (a refunded card tender would read "
            f"as paid, a cash payout would vanish from its drawer); nothing was changed")
    with op.batch_alter_table("cash_drawers") as batch:
        batch.drop_column("z_report")
    with op.batch_alter_table("tenders") as batch:
        for column in ("void_drawer_id", "void_refund_id", "voided_at", "voided_by",
                       "void_reason", "void_state"):
            batch.drop_column(column)
