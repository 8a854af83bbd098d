"""Itemised receipts, original and amended, as JSON, plain text and HTML.

A receipt is the ``receipts`` row issued at exit or at the staffed checkout; a
dispute never changes it but issues an amended receipt (``amended_receipts``)
that references the version it replaces, so the chain original -> amendment ->
amendment is kept whole. Tax lines are recomputed from the lines with the
store's tax policy (``storefront.pricing.tax``: once per category, half up).

Names in any script: plain text reuses ``storefront.pricing.render_receipt_text``
(each name in FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE); HTML escapes
every stored string (``html.escape``) and puts each name in
``<bdi dir="auto">``, the HTML element for bidi isolation (HTML Living Standard
4.5.24; Unicode UAX #9 section 2.7), so a Hebrew or Arabic name is laid out
right-to-left without reordering the amounts around it. Bidi control
characters inside names are dropped first. Money is integer minor units.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.models import AmendedReceipt, Dispute, Payment, Receipt, Tender
from storefront.errors import NotFound
from storefront.money import format_minor
from storefront.pricing import PricedCart, PricedLine, PromotionRepository, TaxLine, TaxPolicy
from storefront.pricing.receipt_text import render_receipt_text
from storefront.pricing.tax import receipt_taxes

_LINE_FIELDS = {f.name for f in fields(PricedLine)}
_BIDI_CONTROLS = dict.fromkeys(
    [0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


@dataclass(frozen=True)
class PaymentLine:
    """How the receipt was paid: ``kind`` card or cash; cash shows tendered and change."""

    kind: str
    amount_minor: int
    tendered_minor: int
    change_minor: int
    reference: str | None


@dataclass(frozen=True)
class ReceiptDocument:
    """One version of a receipt, ready to render.

    ``original_receipt_id`` is the receipt issued at checkout (equal to ``id``
    for the original); ``amends_receipt_id`` the version this one replaces;
    ``amended_by`` the version that replaced this one (None for the latest).
    For an amendment, ``refund_minor`` is what it refunded and ``dispute`` says why.
    """

    id: str
    original_receipt_id: str
    amends_receipt_id: str | None
    amended_by: str | None
    session_id: str
    shopper_id: str
    issued_at: datetime
    currency: str
    lines: tuple[PricedLine, ...]
    taxes: tuple[TaxLine, ...]
    total_minor: int
    prices_include_tax: bool
    payments: tuple[PaymentLine, ...]
    refund_minor: int = 0
    dispute: dict[str, Any] | None = None


def line_from_dict(data: dict[str, Any]) -> PricedLine:
    """A stored receipt line (a ``PricedLine`` as a dict) back as a ``PricedLine``."""
    values = {k: v for k, v in data.items() if k in _LINE_FIELDS}
    if "payable_minor" not in data:  # lines stored before promotions existed
        values["payable_minor"] = data["line_total_minor"] - data.get("discount_minor", 0)
    return PricedLine(**values)


def total_of(lines: tuple[PricedLine, ...], policy: TaxPolicy) -> tuple[int, tuple[TaxLine, ...]]:
    """What the shopper pays for ``lines`` and the tax lines (tax added when prices exclude it)."""
    taxes = receipt_taxes(((line.tax_category, line.payable_minor) for line in lines), policy)
    total = sum(line.payable_minor for line in lines)
    if not policy.prices_include_tax:
        total += sum(tax.tax_minor for tax in taxes)
    return total, taxes


class ReceiptStore:
    """Reads receipts and their amendments; ``tax`` is the store's tax setting."""

    def __init__(self, *, sessions: sessionmaker[Session], tax: TaxPolicy) -> None:
        self._db = sessions
        self._tax = tax

    def policy(self) -> TaxPolicy:
        """The store's tax policy with the tax categories stored in the database."""
        return self._tax.with_categories(PromotionRepository(self._db).tax_rates())

    def get(self, receipt_id: str) -> ReceiptDocument:
        """The receipt or amended receipt ``receipt_id``. Raises NotFound."""
        with self._db() as db:
            amended = db.get(AmendedReceipt, receipt_id)
            original = db.get(Receipt, amended.original_receipt_id if amended else receipt_id)
            if original is None:
                raise NotFound(f"receipt {receipt_id!r} does not exist")
            nxt = db.scalars(sa.select(AmendedReceipt.id)
                             .where(AmendedReceipt.amends_receipt_id == receipt_id)).first()
            payments = _payments(db, original.session_id)
            dispute = db.get(Dispute, amended.dispute_id) if amended else None
        lines = tuple(line_from_dict(line)
                      for line in (amended.lines if amended else original.lines))
        policy = self.policy()
        _, taxes = total_of(lines, policy)
        return ReceiptDocument(
            id=receipt_id, original_receipt_id=original.id,
            amends_receipt_id=amended.amends_receipt_id if amended else None, amended_by=nxt,
            session_id=original.session_id, shopper_id=original.shopper_id,
            issued_at=amended.issued_at if amended else original.issued_at,
            currency=original.currency, lines=lines, taxes=taxes,
            total_minor=amended.total_minor if amended else original.total_minor,
            prices_include_tax=policy.prices_include_tax, payments=payments,
            refund_minor=amended.refund_minor if amended else 0,
            dispute=_dispute_summary(dispute) if dispute else None)

    def latest(self, original_receipt_id: str) -> ReceiptDocument:
        """The newest version of a receipt (the original when never amended)."""
        version = original_receipt_id
        with self._db() as db:
            while True:
                nxt = db.scalars(sa.select(AmendedReceipt.id)
                                 .where(AmendedReceipt.amends_receipt_id == version)).first()
                if nxt is None:
                    break
                version = nxt
        return self.get(version)


def _payments(db: Session, session_id: str) -> tuple[PaymentLine, ...]:
    out = []
    for pay in db.scalars(sa.select(Payment).where(Payment.session_id == session_id,
                                                   Payment.state == "captured")):
        amount = getattr(pay, "captured_minor", None) or pay.amount_minor
        out.append(PaymentLine("card", amount, amount, 0, getattr(pay, "capture_ref", None)))
    for t in db.scalars(sa.select(Tender).where(Tender.session_id == session_id,
                                                Tender.state.in_(("taken", "captured")))
                        .order_by(Tender.created_at, Tender.id)):
        out.append(PaymentLine(t.kind, t.amount_minor, t.tendered_minor, t.change_minor,
                               t.capture_id))
    return tuple(out)


def _dispute_summary(row: Dispute) -> dict[str, Any]:
    return {"dispute_id": row.id, "product_code": row.product_code, "quantity": row.quantity,
            "reason": row.reason, "refund_state": row.state,
            "card_refund_minor": row.refund_minor - row.cash_refund_minor,
            "cash_refund_minor": row.cash_refund_minor}


# --- rendering -----------------------------------------------------------------------


def render_json(doc: ReceiptDocument) -> dict[str, Any]:
    """The receipt as a JSON-ready dict (times ISO 8601 UTC, money minor units)."""
    return {
        "id": doc.id, "kind": "amended" if doc.amends_receipt_id else "original",
        "original_receipt_id": doc.original_receipt_id,
        "amends_receipt_id": doc.amends_receipt_id, "amended_by": doc.amended_by,
        "session_id": doc.session_id, "shopper_id": doc.shopper_id,
        "issued_at": doc.issued_at.isoformat(), "currency": doc.currency,
        "lines": [asdict(line) for line in doc.lines],
        "taxes": [asdict(tax) for tax in doc.taxes],
        "prices_include_tax": doc.prices_include_tax, "total_minor": doc.total_minor,
        "payments": [asdict(p) for p in doc.payments],
        "refund_minor": doc.refund_minor, "dispute": doc.dispute,
    }


def render_text(doc: ReceiptDocument, *, width: int = 42) -> str:
    """The receipt as plain text (names bidi-isolated), ``width`` columns."""
    title = "AMENDED RECEIPT" if doc.amends_receipt_id else "RECEIPT"
    priced = PricedCart(doc.lines, doc.total_minor, doc.currency, (), doc.taxes,
                        doc.prices_include_tax)
    head = [f"receipt {doc.id}", f"issued {doc.issued_at.isoformat()}"]
    if doc.amends_receipt_id:
        head.append(f"amends {doc.amends_receipt_id}")
    if doc.amended_by:
        head.append(f"superseded by {doc.amended_by}")
    tail = [_pay_text(p, doc.currency) for p in doc.payments]
    if doc.dispute:
        tail.append(f"disputed {doc.dispute['product_code']} x {doc.dispute['quantity']}: "
                    f"refund {format_minor(doc.refund_minor, doc.currency)} "
                    f"({doc.dispute['refund_state']})")
    return ("\n".join(head) + "\n" + render_receipt_text(priced, width=width, title=title)
            + "".join(f"{line}\n" for line in tail))


def _pay_text(p: PaymentLine, currency: str) -> str:
    text = f"paid {p.kind} {format_minor(p.amount_minor, currency)}"
    if p.kind == "cash":
        text += (f" (tendered {format_minor(p.tendered_minor, currency)}, "
                 f"change {format_minor(p.change_minor, currency)})")
    return text


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _name(text: str) -> str:
    return f'<bdi dir="auto">{_h(text.translate(_BIDI_CONTROLS))}</bdi>'


def render_html(doc: ReceiptDocument) -> str:
    """The receipt as a standalone HTML5 page; every stored string is escaped."""
    cur = doc.currency
    title = "Amended receipt" if doc.amends_receipt_id else "Receipt"
    rows = []
    for line in doc.lines:
        qty = (f"{line.quantity} g" if line.sold_by_weight else f"{line.quantity}")
        rows.append(f"<tr><td>{_name(line.name)}<br><small>{_h(line.code)}</small></td>"
                    f"<td class=\"num\">{_h(qty)}</td>"
                    f"<td class=\"num\">{_h(format_minor(line.unit_price_minor, cur))}</td>"
                    f"<td class=\"num\">{_h(format_minor(-line.discount_minor, cur))}</td>"
                    f"<td class=\"num\">{_h(format_minor(line.payable_minor, cur))}</td></tr>")
    taxes = "".join(f"<li>tax {_h(t.category)} {t.rate_bp / 100:.2f}%: "
                    f"{_h(format_minor(t.tax_minor, cur))}</li>" for t in doc.taxes)
    pays = "".join(f"<li>{_h(_pay_text(p, cur))}</li>" for p in doc.payments)
    refs = f"<p>Amends <a href=\"/receipts/{_h(doc.amends_receipt_id)}?format=html\">" \
           f"{_h(doc.amends_receipt_id)}</a></p>" if doc.amends_receipt_id else ""
    if doc.amended_by:
        refs += f"<p>Superseded by <a href=\"/receipts/{_h(doc.amended_by)}?format=html\">" \
                f"{_h(doc.amended_by)}</a></p>"
    if doc.dispute:
        refs += (f"<p>Disputed {_h(doc.dispute['product_code'])} x "
                 f"{_h(doc.dispute['quantity'])}: {_name(str(doc.dispute['reason']))}; refund "
                 f"{_h(format_minor(doc.refund_minor, cur))} ({_h(doc.dispute['refund_state'])})"
                 f"</p>")
    return (
        "<!DOCTYPE html>\n<html lang=\"und\" dir=\"ltr\"><head><meta charset=\"utf-8\">"
        f"<title>{_h(title)} {_h(doc.id)}</title>"
        "<style>td.num{text-align:right;font-variant-numeric:tabular-nums}</style></head>"
        f"<body><h1>{_h(title)}</h1><p>{_h(doc.id)} &middot; {_h(doc.issued_at.isoformat())}"
        f"</p>{refs}<table><thead><tr><th>item</th><th>qty</th><th>price</th>"
        "<th>promotion</th><th>amount</th></tr></thead><tbody>" + "".join(rows) +
        f"</tbody></table><ul>{taxes}</ul><p><strong>Total "
        f"{_h(format_minor(doc.total_minor, cur))}</strong></p><ul>{pays}</ul></body></html>\n")
