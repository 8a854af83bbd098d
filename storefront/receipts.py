"""Itemised receipts, original and amended, as JSON, plain text and HTML.

A receipt is the ``receipts`` row issued at exit or at the staffed checkout; a
dispute never changes it but issues an amended receipt (``amended_receipts``)
that references the version it replaces, so the chain original -> amendment ->
amendment is kept whole. Tax lines are computed from the lines (``storefront.pricing.tax``:
once per category, half up) at the tax the sale was charged at, never at today's rates:

- A line stored with ``tax_rate_bp`` and ``tax_included`` (``stamp_tax``, written when the
  receipt or amendment is issued) is taxed at that rate ("recorded").
- A line stored without them (receipts issued before rates were stored, or by a writer
  that does not stamp) is resolved from the stored total (``sale_tax``): today's rates when
  they reproduce it, or when the total does not depend on the rate (prices include tax)
  ("current"); otherwise the one rate that reproduces the stored total ("derived", see
  ``sale_tax``); when no single rate does, "unknown" (the tax lines are shown at today's
  rates and a dispute whose refund depends on the rate is refused).

Names in any script: plain text reuses ``storefront.pricing.render_receipt_text``
(each name in FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE); HTML escapes
every stored string (``html.escape``) and puts each name in
``<bdi dir="auto">``, the HTML element for bidi isolation (HTML Living Standard
4.5.24; Unicode UAX #9 section 2.7), so a Hebrew or Arabic name is laid out
right-to-left without reordering the amounts around it. Bidi control
characters inside names are dropped first. Money is integer minor units.
"""

from __future__ import annotations

import bisect
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.models import AmendedReceipt, Dispute, Payment, Receipt, Tender
from storefront.errors import InvalidInput, NotFound
from storefront.money import format_minor
from storefront.pricing import PricedCart, PricedLine, PromotionRepository, TaxLine, TaxPolicy
from storefront.pricing.model import FULL_RATE_BP
from storefront.pricing.receipt_text import render_receipt_text
from storefront.pricing.rounding import round_half_up
from storefront.pricing.tax import receipt_taxes

# Per-line keys of a stored receipt line that record the tax the sale was charged at.
TAX_RATE_KEY = "tax_rate_bp"
TAX_INCLUDED_KEY = "tax_included"
# How a receipt version's tax was established (``SaleTax.basis``), best first.
TAX_BASES = ("recorded", "current", "derived", "unknown")
# Rate steps tried, coarsest first, when a rate is derived from a stored total: real VAT
# rates are whole or half percents, so the roundest rate that fits is the likeliest one.
_RATE_STEPS_BP = (100, 50, 25, 10, 5, 1)

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
    tax_policy: TaxPolicy | None = None
    tax_basis: str = "recorded"


@dataclass(frozen=True)
class SaleTax:
    """The tax a receipt version was charged at.

    ``policy``: prices include tax or not, and the rate (basis points) of every tax
    category on the receipt; ``basis``: one of ``TAX_BASES`` (how it was established,
    see the module docstring).
    """

    policy: TaxPolicy
    basis: str


def stamp_tax(lines: Iterable[Mapping[str, Any]], policy: TaxPolicy) -> list[dict[str, Any]]:
    """Receipt lines (``PricedLine`` dicts) with the tax they are charged at recorded.

    Each line gets ``tax_rate_bp`` (its category's rate in ``policy``, basis points) and
    ``tax_included`` (``policy.prices_include_tax``); a receipt issued with stamped lines
    is rendered and refunded at those rates whatever the store's rates are later. Call
    it with the policy the lines were priced with, when the receipt is issued.

    Raises:
        InvalidInput: a line's tax category is unknown to ``policy``.
    """
    out = []
    for line in lines:
        stamped = dict(line)
        stamped[TAX_RATE_KEY] = policy.rate_bp(str(stamped.get("tax_category", "standard")))
        stamped[TAX_INCLUDED_KEY] = policy.prices_include_tax
        out.append(stamped)
    return out


def priced_receipt_lines(priced: PricedCart) -> tuple[dict[str, Any], ...]:
    """The lines of a priced cart as receipt dicts (``PricedLine`` fields), each stamped
    with the rate its category was taxed at in ``priced.taxes`` (basis points) and
    whether prices included tax: what ``stamp_tax`` records, taken from the pricing
    itself, so a rate changed between pricing and the receipt does not reach it.

    Raises:
        KeyError: a line's tax category has no tax line (``price_lines`` makes one
        for every category of the cart, so only a hand-built cart can lack it).
    """
    rates = {tax.category: tax.rate_bp for tax in priced.taxes}
    return tuple({**asdict(line), TAX_RATE_KEY: rates[line.tax_category],
                  TAX_INCLUDED_KEY: priced.prices_include_tax} for line in priced.lines)


def sale_tax(lines: Sequence[Mapping[str, Any]], total_minor: int,
             store: TaxPolicy) -> SaleTax:
    """The tax a stored receipt version (its JSON ``lines`` and ``total_minor``) was
    charged at; ``store`` is the store's policy today.

    1. Every line stamped (``stamp_tax``) and the stamps reproduce ``total_minor``:
       the stamps ("recorded").
    2. Otherwise, starting from the stamps or else ``store``: when the total carries no
       tax (``total == sum of payable``) prices included tax, at the reference rates
       (the total does not depend on the rate, so nothing else can be told). When the
       reference rates reproduce the total with prices excluding tax, those. Either is
       "current" when it agrees with the reference's included/excluded setting, else
       "derived" (the setting changed since).
    3. Otherwise prices excluded tax and the tax paid is ``total - sum of payable``: one
       category's rate is solved for, the others kept, so that the category-wise tax
       (``storefront.pricing.tax``) adds up to it exactly; of the rates that do, the
       roundest (whole percent first, then 0.5 %, 0.25 %, 0.1 %, 0.05 %, 0.01 %) and,
       among those, the nearest to the reference rate ("derived"). When more than one
       category's change could explain the total (a category taxed at 0 % today
       counts: its rate may have been cut to 0 % since), or no rate fits: "unknown"
       (reference rates, unknown ones 0), never a guess.

    Raises nothing for inconsistent data: it is reported as basis "unknown".
    """
    priced = tuple(line_from_dict(dict(line)) for line in lines)
    categories = sorted({line.tax_category for line in priced})
    recorded = _recorded(lines)
    if recorded is not None and _total_or_none(priced, recorded) == total_minor:
        return SaleTax(recorded, "recorded")
    reference = recorded or store
    rates = {c: _rate_or_none(reference, c) for c in categories}
    known = all(rate is not None for rate in rates.values())
    payable = sum(line.payable_minor for line in priced)
    if total_minor == payable and (reference.prices_include_tax or known and any(
            rates[c] for c in categories if _net(priced, c))):
        basis = "current" if reference.prices_include_tax else "derived"
        return SaleTax(_policy(True, rates, store), basis if known else "unknown")
    if known and _total_or_none(priced, _policy(False, rates, store)) == total_minor:
        return SaleTax(_policy(False, rates, store),
                       "derived" if reference.prices_include_tax else "current")
    solved = _solve_rates(priced, total_minor - payable, rates)
    if solved is None:
        return SaleTax(_policy(reference.prices_include_tax, rates, store), "unknown")
    return SaleTax(_policy(False, solved, store), "derived")


def _recorded(lines: Sequence[Mapping[str, Any]]) -> TaxPolicy | None:
    """The policy the lines' stamps describe; None when a line is unstamped or the stamps
    disagree (two rates for one category, or both included and excluded)."""
    rates: dict[str, int] = {}
    included: set[bool] = set()
    for line in lines:
        rate, inc = line.get(TAX_RATE_KEY), line.get(TAX_INCLUDED_KEY)
        if isinstance(rate, bool) or not isinstance(rate, int) or not isinstance(inc, bool):
            return None
        category = str(line.get("tax_category", "standard"))
        if rates.setdefault(category, rate) != rate:
            return None
        included.add(inc)
    if len(included) != 1:
        return None
    return TaxPolicy(included.pop(), rates.get("standard", 0), tuple(sorted(rates.items())))


def _policy(included: bool, rates: Mapping[str, int | None], store: TaxPolicy) -> TaxPolicy:
    known = {c: (0 if r is None else r) for c, r in rates.items()}
    return TaxPolicy(included, known.get("standard", store.standard_rate_bp),
                     tuple(sorted(known.items())))


def _rate_or_none(policy: TaxPolicy, category: str) -> int | None:
    try:
        return policy.rate_bp(category)
    except InvalidInput:
        return None


def _net(lines: tuple[PricedLine, ...], category: str) -> int:
    return sum(line.payable_minor for line in lines if line.tax_category == category)


def _total_or_none(lines: tuple[PricedLine, ...], policy: TaxPolicy) -> int | None:
    try:
        return total_of(lines, policy)[0]
    except InvalidInput:
        return None


def _solve_rates(lines: tuple[PricedLine, ...], tax_paid: int,
                 rates: Mapping[str, int | None]) -> dict[str, int] | None:
    """Rates with one category's rate changed so that the excluded tax is ``tax_paid``."""
    if tax_paid < 0:
        return None
    nets = {c: _net(lines, c) for c in rates}
    solutions: list[tuple[str, int]] = []
    for category, net in nets.items():
        others = [c for c in rates if c != category and nets[c]]
        if net <= 0 or any(rates[c] is None for c in others):
            continue
        fixed = sum(round_half_up(nets[c] * int(rates[c] or 0), FULL_RATE_BP) for c in others)
        rate = _solve_rate(net, tax_paid - fixed, rates[category])
        if rate is not None:
            solutions.append((category, rate))
    # More than one category's change explains the total (a category at 0 % today
    # included: its rate may have been cut to 0 % since the sale): no guess.
    if len(solutions) != 1:
        return None
    category, rate = solutions[0]
    out = {c: int(r or 0) for c, r in rates.items()}
    out[category] = rate
    return out


def _solve_rate(net: int, tax: int, hint: int | None) -> int | None:
    """The roundest rate r (basis points, 0-10000) with ``round_half_up(net * r / 10000)
    == tax``, nearest to ``hint`` among equally round ones; None when none fits."""
    if tax < 0 or net <= 0:
        return None

    def tax_at(rate: int) -> int:
        return round_half_up(net * rate, FULL_RATE_BP)  # non-decreasing in the rate

    rates = range(FULL_RATE_BP + 1)
    first = bisect.bisect_left(rates, tax, key=tax_at)  # first rate whose tax reaches it
    last = bisect.bisect_right(rates, tax, key=tax_at) - 1  # last rate whose tax is it
    if first > last:
        return None
    target = first if hint is None else hint
    for step in _RATE_STEPS_BP:
        start = -(-first // step) * step
        if start <= last:
            return min(range(start, last + 1, step), key=lambda r: (abs(r - target), r))
    return None  # unreachable: step 1 always fits when first <= last


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
        stored = amended.lines if amended else original.lines
        total = amended.total_minor if amended else original.total_minor
        sale = sale_tax(stored, total, self.policy())
        lines = tuple(line_from_dict(line) for line in stored)
        _, taxes = total_of(lines, sale.policy)
        return ReceiptDocument(
            id=receipt_id, original_receipt_id=original.id,
            amends_receipt_id=amended.amends_receipt_id if amended else None, amended_by=nxt,
            session_id=original.session_id, shopper_id=original.shopper_id,
            issued_at=amended.issued_at if amended else original.issued_at,
            currency=original.currency, lines=lines, taxes=taxes,
            total_minor=total, prices_include_tax=sale.policy.prices_include_tax,
            payments=payments, refund_minor=amended.refund_minor if amended else 0,
            dispute=_dispute_summary(dispute) if dispute else None,
            tax_policy=sale.policy, tax_basis=sale.basis)

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
        "prices_include_tax": doc.prices_include_tax, "tax_basis": doc.tax_basis,
        "total_minor": doc.total_minor,
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
    if doc.tax_basis == "unknown":
        tail.insert(0, _UNKNOWN_TAX)
    if doc.dispute:
        tail.append(f"disputed {doc.dispute['product_code']} x {doc.dispute['quantity']}: "
                    f"refund {format_minor(doc.refund_minor, doc.currency)} "
                    f"({doc.dispute['refund_state']})")
    return ("\n".join(head) + "\n" + render_receipt_text(priced, width=width, title=title)
            + "".join(f"{line}\n" for line in tail))


_UNKNOWN_TAX = "tax rates of this sale are not recorded: tax shown at today's rates"


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
    if doc.tax_basis == "unknown":
        taxes += f"<li>{_h(_UNKNOWN_TAX)}</li>"
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
