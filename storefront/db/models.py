"""SQLAlchemy table models of the storefront (shoppers, templates, catalogue, sessions, payments).

The shopping-session event log itself lives in ``cart.sql_event_store`` (table
``cart_events``); ``shopping_sessions`` here is a read model of it for queues and lists.
Money is integer minor units; times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that refuses naive datetimes and always comes back tz-aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime refused: times must be timezone-aware UTC")
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        from datetime import UTC

        if value is None:
            return None
        stamp: datetime = value
        if stamp.tzinfo is None:  # SQLite stores no offset; we only ever write UTC
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the storefront tables."""


class Shopper(Base):
    """A shopper account; ``payment_token`` is a processor token, never a card number."""

    __tablename__ = "shoppers"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.String(200))
    payment_token: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PalmTemplate(Base):
    """One encrypted palm template (AES-256-GCM envelope blob) of a shopper."""

    __tablename__ = "palm_templates"
    template_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("shoppers.id", ondelete="CASCADE"), index=True
    )
    ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Product(Base):
    """A catalogue product; ``code`` is a GTIN or the seller's own code (a string)."""

    __tablename__ = "products"
    code: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    unit_price_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    is_gtin: Mapped[bool] = mapped_column(sa.Boolean(), default=False)
    sold_by_weight: Mapped[bool] = mapped_column(sa.Boolean(), default=False,
                                                 server_default=sa.false())
    tax_category: Mapped[str] = mapped_column(sa.String(32), default="standard",
                                              server_default="standard")
    allow_discount: Mapped[bool] = mapped_column(sa.Boolean(), default=True,
                                                 server_default=sa.true())
    # Sold only after staff check the shopper's age (alcohol, tobacco, knives...).
    age_restricted: Mapped[bool] = mapped_column(sa.Boolean(), default=False,
                                                 server_default=sa.false())
    # Not on sale since then (UTC), NULL when on sale: a catalogue import that replaced
    # the store did not list it, so its price is the other store's. Pricing refuses it
    # (the exit sends the cart to the staffed checkout); the row stays, as carts,
    # receipts and disputes name it; an import listing it or PUT /products clears it.
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class TaxCategory(Base):
    """A tax category other than ``standard`` (whose rate is a store setting)."""

    __tablename__ = "tax_categories"
    code: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    rate_bp: Mapped[int] = mapped_column(sa.Integer())


class PromotionRow(Base):
    """A promotion (see ``storefront.pricing.model.Promotion``); ``source`` is its import.

    Quantities are milli-quantities (units x 1000, or grams); money minor units;
    ``rate_bp`` basis points.
    """

    __tablename__ = "promotions"
    id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.String(300))
    min_quantity_milli: Mapped[int] = mapped_column(sa.BigInteger())
    price_minor: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    bundle_milli: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    rate_bp: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    buy_units: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    get_units: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    club_only: Mapped[bool] = mapped_column(sa.Boolean())
    valid_until: Mapped[date | None] = mapped_column(sa.Date(), nullable=True)


class CatalogueImport(Base):
    """A store whose price files were imported into the catalogue (``chain:store``, as
    the promotions' ``source``), and when last: ``storefront catalog import`` refuses
    another store's files unless told to replace it, promotions or none."""

    __tablename__ = "catalogue_imports"
    source: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    imported_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PromotionItem(Base):
    """A product code eligible for a promotion."""

    __tablename__ = "promotion_items"
    promotion_id: Mapped[str] = mapped_column(
        sa.String(80), sa.ForeignKey("promotions.id", ondelete="CASCADE"), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), primary_key=True, index=True)


class ShoppingSession(Base):
    """Read model of a shopping session (the event log in ``cart_events`` is the truth)."""

    __tablename__ = "shopping_sessions"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    entry_method: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    staffed_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    total_minor: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    exited_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The exit flow's lease: one process at a time runs a session's exit (see checkout.py).
    exit_claim: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    exit_claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The cart as priced at exit (JSON list of lines), so retries charge what was priced.
    priced_lines: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON(), nullable=True)


class Payment(Base):
    """The payment of one session: the hold, its capture or release, refunds.

    ``state`` is a rest state (authorized, declined, captured, voided, failed) or
    an in-flight one (authorizing, adjusting, capturing, voiding) written before
    a processor call; ``amount_minor`` is the amount currently held. Each call
    is journaled in ``payment_operations``.
    """

    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    state: Mapped[str] = mapped_column(sa.String(24))
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    processor_ref: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    shopper_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    captured_minor: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    capture_ref: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    refunded_minor: Mapped[int] = mapped_column(sa.BigInteger(), default=0, server_default="0")
    # A hold replaced by a re-authorization and not yet released.
    superseded_ref: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)


class PaymentOperation(Base):
    """One processor call, journaled before it is made and completed after it answers.

    ``state``: in_flight (sent, answer not recorded), succeeded, declined, failed
    (refused), not_applied (the processor has no trace of it). ``prior_state``
    is the payment's state to return to when the call did not take effect.
    """

    __tablename__ = "payment_operations"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    payment_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(sa.String(24))
    kind: Mapped[str] = mapped_column(sa.String(16))
    idempotency_key: Mapped[str] = mapped_column(sa.String(160), unique=True)
    reference: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger())
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    prior_state: Mapped[str] = mapped_column(sa.String(24))
    result_ref: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Receipt(Base):
    """A receipt issued at exit; ``lines`` is a JSON list of priced lines."""

    __tablename__ = "receipts"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    total_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- Staffed checkout, till and disputes (migration 0005) ------------------------------


class StaffClaim(Base):
    """Who works a staffed-checkout session; the claim lapses at ``expires_at``."""

    __tablename__ = "staff_claims"
    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(sa.String(64))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CartCorrection(Base):
    """A staff correction of one cart line: quantity before and after, with the reason."""

    __tablename__ = "cart_corrections"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    staff_id: Mapped[str] = mapped_column(sa.String(64))
    product_code: Mapped[str] = mapped_column(sa.String(32))
    quantity_before: Mapped[int] = mapped_column(sa.BigInteger())
    quantity_after: Mapped[int] = mapped_column(sa.BigInteger())
    reason: Mapped[str] = mapped_column(sa.String(300))
    corrected_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FlagResolution(Base):
    """A review flag of a session's cart, resolved by staff."""

    __tablename__ = "flag_resolutions"
    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    device_seq: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(sa.String(64))
    note: Mapped[str] = mapped_column(sa.String(300))
    resolved_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FrozenCart(Base):
    """A staffed cart as priced when its first tender was taken, kept until the close.

    Money paid against a cart must keep meaning the same sale: after a tender the
    staffed checkout prices from this row (``lines``: JSON list of priced lines,
    ``total_minor`` in minor units, prices and promotions of ``priced_at``), never
    from the live catalogue. ``corrections``: how many corrections it includes.
    """

    __tablename__ = "staffed_frozen_carts"
    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    total_minor: Mapped[int] = mapped_column(sa.BigInteger())
    lines: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    age_restricted: Mapped[bool] = mapped_column(sa.Boolean())
    corrections: Mapped[int] = mapped_column(sa.Integer())
    priced_at: Mapped[datetime] = mapped_column(UtcDateTime())
    frozen_by: Mapped[str] = mapped_column(sa.String(64))


class AgeCheck(Base):
    """The shopper's age was checked by ``staff_id`` at ``checked_at``."""

    __tablename__ = "age_checks"
    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(sa.String(64))
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CashDrawer(Base):
    """A cash drawer session of a till; ``open_till`` is set only while open (one per till)."""

    __tablename__ = "cash_drawers"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    till_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    open_till: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, unique=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    float_minor: Mapped[int] = mapped_column(sa.BigInteger())
    opened_by: Mapped[str] = mapped_column(sa.String(64))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_by: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    expected_minor: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    counted_minor: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    z_report: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(), nullable=True)
    """The whole Z report as given when the drawer was closed (``storefront.till.
    DrawerReport`` as a JSON object, money in minor units), written in the closing
    transaction and read back unchanged. NULL: still open, or closed before migration
    0012 (its Z report is then recomputed, with ``expected_minor`` as stored)."""


class Tender(Base):
    """A tender taken at the staffed checkout (cash into a drawer, or card via the processor).

    ``amount_minor`` is what the tender pays of the sale; for cash
    ``tendered_minor - change_minor``. Card state is written before and after
    each processor call.
    """

    __tablename__ = "tenders"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    state: Mapped[str] = mapped_column(sa.String(16))
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger())
    tendered_minor: Mapped[int] = mapped_column(sa.BigInteger())
    change_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    till_id: Mapped[str] = mapped_column(sa.String(64))
    drawer_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    staff_id: Mapped[str] = mapped_column(sa.String(64))
    authorization_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    capture_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    payment_token: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    """The card's processor token while the tender is pending (a resume charges that card,
    as ``shoppers.payment_token`` holds it); cleared when the tender reaches a final state."""
    payment_token_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """Hex SHA-256 of the card's token, kept so a replay with another card is refused."""
    void_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    """None (never voided), ``voiding`` (a card tender's refund was started under the
    key ``void:<id>``; the tender still counts as paid until it is recorded) or
    ``voided`` (the money went back; ``state`` is then ``voided``)."""
    void_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    voided_by: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    void_refund_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    """The processor's refund id of a voided card tender."""
    void_drawer_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """The drawer a voided cash tender's cash was paid back out of (the one open at the
    tender's till then; its X and Z reports count it as a cash void)."""


class Dispute(Base):
    """A shopper's dispute of a receipt line and its refund (``refund_parts``: JSON list).

    ``dispute_key`` makes the dispute idempotent: the same key refunds once.
    """

    __tablename__ = "disputes"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    dispute_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    receipt_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    product_code: Mapped[str] = mapped_column(sa.String(32))
    quantity: Mapped[int] = mapped_column(sa.BigInteger())
    reason: Mapped[str] = mapped_column(sa.String(300))
    state: Mapped[str] = mapped_column(sa.String(16))
    refund_minor: Mapped[int] = mapped_column(sa.BigInteger())
    cash_refund_minor: Mapped[int] = mapped_column(sa.BigInteger())
    drawer_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    refund_parts: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    amended_receipt_id: Mapped[str] = mapped_column(sa.String(64))
    failure_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AmendedReceipt(Base):
    """A receipt amended by a dispute; the original (``receipts``) is kept unchanged.

    ``amends_receipt_id`` is the version it replaces (the original or an earlier
    amendment); ``original_receipt_id`` the receipt issued at checkout.
    """

    __tablename__ = "amended_receipts"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    original_receipt_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    amends_receipt_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    dispute_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    total_minor: Mapped[int] = mapped_column(sa.BigInteger())
    refund_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PalmTemplateChange(Base):
    """Change log of ``palm_templates``: every API worker replays it into its index.

    ``kind`` is ``added`` (with the template id) or ``removed`` (a subject's
    templates were deleted). Holds ids only, never template bytes.
    """

    __tablename__ = "palm_template_changes"
    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                     sa.Identity(), primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    shopper_id: Mapped[str] = mapped_column(sa.String(64))
    template_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- Shopper accounts and the privacy portal (migration 0008) ---------------------------


class ShopperAccount(Base):
    """Login credentials of a shopper: an argon2id password hash and an optional TOTP secret,
    ``totp_secret_sealed`` (AES-256-GCM under the KEK, :mod:`storefront.shopper_totp`);
    ``totp_secret``: the secret in clear as versions before 0013 stored it, sealed and
    emptied at start-up, never written now; ``totp_last_step``: the last 30-second TOTP
    step accepted (a code of it or an earlier step is refused: each code signs in once),
    None before the first."""

    __tablename__ = "shopper_accounts"
    shopper_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    totp_enabled: Mapped[bool] = mapped_column(sa.Boolean(), default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary(), nullable=True)


class ShopperAuthSession(Base):
    """An opaque session token of a shopper, stored only as its SHA-256 hash."""

    __tablename__ = "shopper_auth_sessions"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BiometricConsent(Base):
    """Consent to a purpose (e.g. palm enrolment): text version shown, when given, withdrawn;
    ``recorded_by``: who recorded it (``shopper:<id>`` self-service, ``staff:<id>`` at a
    staff-assisted enrolment with the shopper's enrolment code; NULL before revision 0013)."""

    __tablename__ = "biometric_consents"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    purpose: Mapped[str] = mapped_column(sa.String(64))
    text_version: Mapped[str] = mapped_column(sa.String(32))
    given_at: Mapped[datetime] = mapped_column(UtcDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    recorded_by: Mapped[str | None] = mapped_column(sa.String(80), nullable=True)


class PrivacyChoice(Base):
    """A shopper's privacy choices: recommendation opt-out and retention periods in days."""

    __tablename__ = "privacy_choices"
    shopper_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    recommendations_opt_out: Mapped[bool] = mapped_column(sa.Boolean(), default=False)
    palm_retention_days: Mapped[int] = mapped_column(sa.Integer())
    trip_retention_days: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PalmEnrolment(Base):
    """One enrolled palm (its template ids), where and when enrolled, when last identified."""

    __tablename__ = "palm_enrolments"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    template_ids: Mapped[list[str]] = mapped_column(sa.JSON())
    store_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    enrolled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_used_store: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class PrivacyExport(Base):
    """A requested data export: ``state`` pending, running, ready, failed or expired (its
    archive deleted; ``error`` says why); the zip archive, sealed under the shopper's own
    key (:mod:`storefront.privacy.archives`); ``expires_at``: when the archive is deleted
    (NULL for rows built before migration 0013: ``finished_at`` plus the expiry period)."""

    __tablename__ = "privacy_exports"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    archive: Mapped[bytes | None] = mapped_column(sa.LargeBinary(), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class StaffAccount(Base):
    """A staff member: ``role`` cashier, manager, auditor or admin; argon2id password hash;
    TOTP secret sealed under the KEK (AES-256-GCM), required for manager and admin;
    ``totp_last_step``: the last 30-second TOTP step accepted (a code of it or an earlier
    step is refused), None before the first or after a TOTP reset; ``disabled_at``: set
    while the account is disabled (no sign-in, its tokens refused)."""

    __tablename__ = "staff_accounts"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)


class StaffToken(Base):
    """A staff bearer token, stored only as its SHA-256 (hex); valid until ``expires_at``."""

    __tablename__ = "staff_tokens"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class DeviceNonce(Base):
    """A nonce of a signed device HTTP request, kept until ``expires_at`` to refuse replays."""

    __tablename__ = "device_nonces"
    device_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AuditEntry(Base):
    """One entry of the tamper-evident audit log (a SHA-256 hash chain, ``seq`` from 1).

    ``details`` is the canonical JSON text that was hashed; ``hash`` covers every
    other column and ``prev_hash`` (see :mod:`storefront.security.audit`).
    """

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                     primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(32), index=True)
    subject: Mapped[str] = mapped_column(sa.String(100), index=True)
    details: Mapped[str] = mapped_column(sa.Text())
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHead(Base):
    """The last audit entry's seq and hash (one row, ``id`` 1): removing the newest
    entries without also rewriting this row is detected."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger())
    hash: Mapped[str] = mapped_column(sa.String(64))


class EntryCode(Base):
    """A short-lived, single-use code (stored as its SHA-256) of a shopper; ``purpose``
    ``entry`` (app entry code, read by a gate) or ``enrolment`` (shown to staff for a
    staff-assisted palm enrolment); a code is accepted only for its purpose."""

    __tablename__ = "entry_codes"
    code_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    purpose: Mapped[str] = mapped_column(sa.String(16), default="entry",
                                         server_default="entry")


class SubjectKey(Base):
    """A shopper's template data key (DEK), wrapped (AES-256-GCM) under KEK ``kek_id``.

    Deleting the row crypto-shreds every copy of the shopper's templates
    (:class:`identity.keyring.Keyring`); ``rotated_at`` is the last re-wrap.
    """

    __tablename__ = "subject_keys"
    subject_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("shoppers.id", ondelete="CASCADE"), primary_key=True
    )
    kek_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    wrapped: Mapped[bytes] = mapped_column(sa.LargeBinary())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class FailedAttempt(Base):
    """One failed attempt counted against a limit (a wrong login, an "address taken"
    sign-up answer, a wrong enrolment code), or an attempt under way, deleted when it turns
    out not to be a failure: :class:`storefront.security.attempts_sql
    .SqlFailureWindow`. ``key_hash`` is the SHA-256 hex of the counter's namespace and key
    (keys hold e-mail addresses, staff ids and client addresses, never stored as such);
    ``expires_at`` is when the row stops counting (``at`` + the window), so old rows can be
    pruned without knowing each counter's window. ``pending``: an attempt under way (not
    yet a failure), counted only shortly (``PENDING_MAX_S``) and expiring then, so the rows
    of a process that died during a check neither count nor stay."""

    __tablename__ = "failed_attempts"
    __table_args__ = (sa.Index("ix_failed_attempts_key_hash_at", "key_hash", "at", "pending"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                    sa.Identity(), primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    pending: Mapped[bool] = mapped_column(sa.Boolean(), default=False,
                                          server_default=sa.false())
