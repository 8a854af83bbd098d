"""Privacy and security hardening: who recorded a consent (``biometric_consents.recorded_by``),
one-time codes by purpose (``entry_codes.purpose``: ``entry`` or ``enrolment``), the last
accepted TOTP time step of staff and shopper accounts (a code is accepted once), a shopper's
TOTP secret sealed under the key-encryption key (``shopper_accounts.totp_secret_sealed``; the
service seals secrets stored in clear before at start-up), and when a stored data export
expires (``privacy_exports.expires_at``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the columns. Rows written before: ``recorded_by`` NULL (not recorded then),
    ``purpose`` ``entry`` (the only kind of code there was), ``totp_last_step`` NULL (no
    code accepted yet under this rule), ``expires_at`` NULL (the export service expires
    them from ``finished_at``)."""
    with op.batch_alter_table("biometric_consents") as batch:
        batch.add_column(sa.Column("recorded_by", sa.String(80), nullable=True))
    with op.batch_alter_table("entry_codes") as batch:
        batch.add_column(sa.Column("purpose", sa.String(16), nullable=False,
                                   server_default="entry"))
    with op.batch_alter_table("staff_accounts") as batch:
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("shopper_accounts") as batch:
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("totp_secret_sealed", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("privacy_exports") as batch:
        batch.add_column(sa.Column("expires_at", TS, nullable=True))


def downgrade() -> None:
    """Drop the columns. Refused (RuntimeError, nothing changed) while an unused
    enrolment code exists (revision 0012 would read it as an entry code) or a shopper's
    TOTP secret is sealed (revision 0012 reads only the clear column)."""
    pending = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM entry_codes WHERE purpose <> 'entry' AND used_at IS NULL"
    )).scalar_one()
    if int(pending or 0):
        raise RuntimeError(
            f"cannot downgrade below revision 0013: {pending} unused enrolment code(s) "
            f"would become gate entry codes; let them expire or delete them first; "
            f"nothing was changed")
    sealed = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM shopper_accounts WHERE totp_secret_sealed IS NOT NULL"
    )).scalar_one()
    if int(sealed or 0):
        raise RuntimeError(
            f"cannot downgrade below revision 0013: {sealed} shopper TOTP secret(s) are "
            f"sealed, which revision 0012 cannot read (those shoppers could no longer sign "
            f"in); nothing was changed")
    with op.batch_alter_table("privacy_exports") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("shopper_accounts") as batch:
        batch.drop_column("totp_secret_sealed")
        batch.drop_column("totp_last_step")
    with op.batch_alter_table("staff_accounts") as batch:
        batch.drop_column("totp_last_step")
    with op.batch_alter_table("entry_codes") as batch:
        batch.drop_column("purpose")
    with op.batch_alter_table("biometric_consents") as batch:
        batch.drop_column("recorded_by")
