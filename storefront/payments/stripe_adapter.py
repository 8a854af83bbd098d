"""Stripe adapter: the ``PaymentProcessor`` port over the official ``stripe`` library.

A hold is a PaymentIntent created with ``capture_method=manual`` and confirmed at
once (Stripe docs, "Place a hold on a payment method"); capture takes
``amount_to_capture`` <= the hold; void cancels the intent; a refund names the
intent. Raising a hold uses incremental authorization when enabled (only some
card networks and accounts allow it), otherwise the service re-authorizes.
Each request carries the idempotency key as the ``Idempotency-Key`` header and
in ``metadata["idempotency_key"]``, so a lost answer can be found again (Search
API, or the newest 100 intents where search is unavailable, as on localstripe).
Card data is only ever a PaymentMethod id (e.g. ``pm_card_visa``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import stripe

from storefront.errors import PaymentError, StorefrontError
from storefront.payments.base import (
    Authorization,
    Capture,
    Operation,
    OperationKind,
    ProcessorTimeout,
    ProcessorUnavailable,
    Refund,
)

T = TypeVar("T")
_META = "idempotency_key"
log = logging.getLogger(__name__)


# Stripe's error code for a request whose idempotency key another request still being
# processed holds (HTTP 409; Stripe API reference, "Error codes": idempotency_key_in_use).
_KEY_IN_USE = "idempotency_key_in_use"


class IdempotencyKeyMisuse(StorefrontError):
    """Stripe refused an idempotency key reused with other parameters (``IdempotencyError``,
    HTTP 400): a bug in how this service derives keys, not a refusal of the payment. Not a
    PaymentError on purpose: the journal neither retries it nor records the call as
    refused (the key's first request may have moved money); the call stays in flight and
    its outcome is found by look-up (``reconcile`` or the next retry)."""

    code = "idempotency_key_misuse"


class ProcessorCredentialsRefused(ProcessorUnavailable):
    """Stripe refused this store's API key itself (HTTP 401 ``AuthenticationError``: a
    wrong, revoked or expired key; HTTP 403 ``PermissionError``: a restricted key without
    the permission): a configuration problem of the store, never the shopper's card.

    A ProcessorUnavailable on purpose: the call did not take effect, and the payment
    journal records nothing against the shopper; the exit answers ``payment_pending``
    (the session stays exited, priced, not sent to the staffed checkout, so the shopper
    is not refused at their next entry as owing money) and is settled once the key is
    corrected (the exit retried, or ``storefront payments reconcile``). ``storefront
    serve`` checks the key at start-up (:meth:`StripeProcessor.check_credentials`)."""

    code = "processor_credentials_refused"


def _error_code(exc: stripe.StripeError) -> str | None:
    """Stripe's ``error.code`` of an answer (the library sets ``exc.code`` only for some
    error classes; it is always in the JSON body)."""
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return exc.code or (str(code) if code else None)


class _RefusedKeys:
    """How often Stripe refused each API key in this process, to log the first refusal of
    a key at ERROR and the later ones at DEBUG, with a WARNING counting them at the 10th,
    100th, 1000th, ... refusal: a refused key fails every payment call (and each of its
    retries), which would otherwise flood the log with the same ERROR. Keys are known by
    a SHA-256 fingerprint (never logged, nor the key). Thread-safe."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, fingerprint: str) -> int:
        """Record one refusal of the key ``fingerprint``; returns how many so far (1: the
        first in this process)."""
        with self._lock:
            self._counts[fingerprint] = self._counts.get(fingerprint, 0) + 1
            return self._counts[fingerprint]

    def clear(self) -> None:
        """Forget every count (the next refusal of any key is logged at ERROR again)."""
        with self._lock:
            self._counts.clear()


refused_keys = _RefusedKeys()
"""The process's refusal counts (:class:`_RefusedKeys`)."""


def key_fingerprint(api_key: str) -> str:
    """A SHA-256 fingerprint of ``api_key`` (hex), to tell keys apart without keeping them."""
    return hashlib.sha256(b"storefront-stripe-key\x00" + api_key.encode()).hexdigest()


def _log_refused_key(exc: stripe.StripeError, fingerprint: str) -> None:
    """Log a refusal of the key ``fingerprint``: ERROR the first time in this process,
    then DEBUG, and a WARNING with the count at the 10th, 100th, ... refusal."""
    seen = refused_keys.count(fingerprint)
    if seen == 1:
        log.error("Stripe refused STOREFRONT_STRIPE_API_KEY (HTTP %s: %s): every payment "
                  "call fails until the key is corrected; exits are left payment_pending "
                  "(later refusals of this key are logged at DEBUG, with a WARNING at the "
                  "10th, 100th, ... refusal)", exc.http_status, exc.user_message or exc)
    elif _power_of_ten(seen):
        log.warning("Stripe has refused STOREFRONT_STRIPE_API_KEY %d times in this process "
                    "(HTTP %s): payment calls keep failing and exits are left "
                    "payment_pending until the key is corrected", seen, exc.http_status)
    else:
        log.debug("Stripe refused STOREFRONT_STRIPE_API_KEY again (HTTP %s; refusal %d in "
                  "this process)", exc.http_status, seen)


def _power_of_ten(n: int) -> bool:
    """True for 10, 100, 1000, ..."""
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def _translate(call: Callable[[], T], *, log_refused_key: bool = True,
               key: str | None = None) -> T:
    """Run a Stripe call; transient failures -> ProcessorUnavailable, refusals -> PaymentError.

    Transient (outcome unknown: look it up, retry with the same key): no connection or no
    answer, 429, 5xx, and HTTP 409 or the ``idempotency_key_in_use`` code (another request
    with this key is still being processed; it may yet succeed). An idempotency key reused
    with other parameters raises :class:`IdempotencyKeyMisuse`. The API key refused (401,
    403) raises :class:`ProcessorCredentialsRefused` (a ProcessorUnavailable: the store's
    configuration, not the shopper's refusal), logged (unless not ``log_refused_key``:
    the caller reports it) at ERROR the first time this process sees the key ``key`` (a
    :func:`key_fingerprint`; None: always at ERROR) refused, later at DEBUG (a counted
    WARNING at the 10th, 100th, ... refusal). Any other refusal (4xx, card errors)
    raises PaymentError.
    """
    try:
        return call()
    except stripe.APIConnectionError as exc:
        raise ProcessorTimeout(f"Stripe unreachable: {exc.user_message or exc}") from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        if log_refused_key and key is not None:
            _log_refused_key(exc, key)
        elif log_refused_key:
            log.error("Stripe refused STOREFRONT_STRIPE_API_KEY (HTTP %s: %s): every payment "
                      "call fails until the key is corrected; exits are left "
                      "payment_pending", exc.http_status, exc.user_message or exc)
        raise ProcessorCredentialsRefused(
            f"the payment processor refused the store's API key (HTTP {exc.http_status}): "
            f"a configuration problem of the store, not the shopper's card") from exc
    except stripe.StripeError as exc:
        if exc.http_status == 409 or _error_code(exc) == _KEY_IN_USE:
            raise ProcessorUnavailable(f"Stripe answered {exc.http_status}: another request "
                                       f"with this idempotency key is in progress") from exc
        if isinstance(exc, stripe.IdempotencyError):
            raise IdempotencyKeyMisuse(f"Stripe refused the idempotency key: "
                                       f"{exc.user_message or exc}") from exc
        if isinstance(exc, (stripe.RateLimitError, stripe.APIError)):
            raise ProcessorUnavailable(f"Stripe answered {exc.http_status}") from exc
        if exc.http_status is not None and exc.http_status >= 500:
            raise ProcessorUnavailable(f"Stripe answered {exc.http_status}") from exc
        raise PaymentError(f"Stripe refused: {exc.user_message or exc}") from exc


class StripeProcessor:
    """PaymentIntents with manual capture. ``api_base``: e.g. a localstripe URL;
    ``timeout_s``: per request; retries are the service's (tenacity), not the library's."""

    def __init__(self, *, api_key: str, api_base: str | None = None, timeout_s: float = 10.0,
                 incremental_authorization: bool = False) -> None:
        if not api_key:
            raise ValueError("a Stripe API key is required")
        bases: dict[str, str] = {"api": api_base} if api_base else {}
        self._client = stripe.StripeClient(
            api_key, base_addresses=bases,  # type: ignore[arg-type]
            max_network_retries=0, http_client=stripe.RequestsClient(timeout=timeout_s))
        self._incremental = incremental_authorization
        self._key = key_fingerprint(api_key)

    def _call(self, call: Callable[[], T]) -> T:
        """:func:`_translate` for this processor's key (a refused key logged at ERROR once
        per process)."""
        return _translate(call, key=self._key)

    def check_credentials(self) -> None:
        """One cheap authenticated request (list one PaymentIntent: a permission the
        adapter needs anyway), for start-up. Raises ProcessorCredentialsRefused when
        Stripe refuses the key, ProcessorUnavailable when it cannot be asked (no answer,
        5xx), PaymentError for another refusal. Logs nothing: the caller reports."""
        _translate(lambda: self._client.v1.payment_intents.list(params={"limit": 1}),
                   log_refused_key=False)

    @property
    def supports_adjust(self) -> bool:
        """True when incremental authorization is enabled for this account."""
        return self._incremental

    @property
    def lookup_is_complete(self) -> bool:
        """False: a look-up searches PaymentIntents by metadata (Stripe's search is
        eventually consistent; without it only the latest 100 are listed), so a miss
        does not prove that no hold was made."""
        return False

    def authorize(self, *, token: str, amount_minor: int, currency: str,
                  idempotency_key: str) -> Authorization:
        """Create and confirm a manual-capture PaymentIntent; a card decline is a result."""
        if amount_minor <= 0 or not token:
            raise PaymentError("a hold needs a positive amount and a payment token")
        params: dict[str, Any] = {
            "amount": amount_minor, "currency": currency.lower(), "payment_method": token,
            "capture_method": "manual", "confirm": True, "payment_method_types": ["card"],
            "metadata": {_META: idempotency_key}}
        if self._incremental:
            params["payment_method_options"] = {
                "card": {"request_incremental_authorization": "if_available"}}
        try:
            intent = self._call(lambda: self._client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key}))
        except PaymentError as exc:
            card = exc.__cause__
            if isinstance(card, stripe.CardError):
                ref = _intent_of_error(card)
                return Authorization(ref, "declined", amount_minor, currency,
                                     card.user_message or "card declined")
            raise
        return _authorization(intent, currency)

    def adjust(self, *, authorization_id: str, amount_minor: int,
               idempotency_key: str) -> Authorization:
        """Incremental authorization (raise only); PaymentError when not enabled."""
        if not self._incremental:
            raise PaymentError("incremental authorization is not enabled: re-authorize")
        intent = self._call(lambda: self._client.v1.payment_intents.increment_authorization(
            authorization_id, params={"amount": amount_minor},
            options={"idempotency_key": idempotency_key}))
        return _authorization(intent, str(intent.currency).upper())

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        """Capture ``amount_minor`` of the intent (the rest of the hold is released).

        A retry of a capture that succeeded but whose answer was lost returns that
        capture: an intent already ``succeeded`` for exactly ``amount_minor`` (Stripe's
        ``amount_received``) is this capture done before, as ``lookup("capture")`` finds
        it. A PaymentIntent is captured at most once and each intent is one hold of this
        service captured under one key, so the captured intent and amount identify the
        call (Stripe would replay it for the same key, but only for 24 hours, and
        localstripe not at all). The same holds when the intent turns ``succeeded``
        while this request's capture call is refused (a concurrent request with the key
        captured it first).

        Raises:
            PaymentError: the intent is not capturable (cancelled, declined, ...), it was
                captured for another amount (not this capture), or Stripe refused.
            ProcessorUnavailable, ProcessorTimeout: no answer (retry with the same key).
        """
        intent = self._retrieve(authorization_id)
        if intent.status == "succeeded":
            return self._earlier_capture(intent, amount_minor)
        # Stripe refuses to capture a cancelled intent; localstripe does not, so check.
        if intent.status != "requires_capture":
            raise PaymentError(f"payment {authorization_id} cannot be captured "
                               f"({intent.status})")
        try:
            intent = self._call(lambda: self._client.v1.payment_intents.capture(
                authorization_id, params={"amount_to_capture": amount_minor},
                options={"idempotency_key": idempotency_key}))
        except ProcessorUnavailable:
            raise  # no answer: the caller retries with the same key (or looks it up)
        except PaymentError:  # refused: a concurrent request may have captured it first
            again = self._retrieve(authorization_id)
            if again.status == "succeeded":
                return self._earlier_capture(again, amount_minor)
            raise
        if intent.status != "succeeded":
            raise PaymentError(f"capture left the payment {intent.status}")
        return Capture(intent.id, authorization_id, amount_minor)

    def void(self, *, authorization_id: str, idempotency_key: str) -> None:
        """Cancel the intent (release the hold); cancelling twice is harmless."""
        intent = self._call(lambda: self._client.v1.payment_intents.retrieve(authorization_id))
        if intent.status == "canceled":
            return
        if intent.status == "succeeded":
            raise PaymentError(f"payment {authorization_id} was captured")
        self._call(lambda: self._client.v1.payment_intents.cancel(
            authorization_id, options={"idempotency_key": idempotency_key}))

    def refund(self, *, capture_id: str, amount_minor: int, idempotency_key: str) -> Refund:
        """Refund part or all of a captured intent."""
        done = self._call(lambda: self._client.v1.refunds.create(
            params={"payment_intent": capture_id, "amount": amount_minor,
                    "metadata": {_META: idempotency_key}},
            options={"idempotency_key": idempotency_key}))
        return Refund(done.id, capture_id, int(done.amount))

    def lookup(self, *, kind: OperationKind, idempotency_key: str,
               reference: str | None) -> Operation | None:
        """Find an earlier call by its key (holds, refunds) or its intent (the rest)."""
        if kind == "authorize":
            intent = self._find_intent(idempotency_key)
            if intent is None:
                return None
            auth = _authorization(intent, str(intent.currency).upper())
            if auth.status == "authorized":
                return Operation("authorize", intent.id, "succeeded", auth.amount_minor)
            return Operation("authorize", intent.id, "declined", auth.amount_minor,
                             auth.decline_reason)
        if kind == "refund":
            return self._find_refund(idempotency_key, reference)
        if reference is None:
            return None
        intent = self._call(lambda: self._client.v1.payment_intents.retrieve(reference))
        if kind == "capture" and intent.status == "succeeded":
            return Operation("capture", intent.id, "succeeded", self._captured(intent))
        if kind == "void" and intent.status == "canceled":
            return Operation("void", intent.id, "succeeded", 0)
        if kind == "adjust" and intent.status == "requires_capture":
            return Operation("adjust", intent.id, "succeeded", int(intent.amount))
        return None

    def _retrieve(self, intent_id: str) -> Any:
        return self._call(lambda: self._client.v1.payment_intents.retrieve(intent_id))

    def _earlier_capture(self, intent: Any, amount_minor: int) -> Capture:
        """The capture already made on a ``succeeded`` intent, when it is for
        ``amount_minor`` (the same capture retried); PaymentError otherwise."""
        captured = self._captured(intent)
        if captured != amount_minor:
            raise PaymentError(f"payment {intent.id} was already captured for "
                               f"{captured} minor units, not {amount_minor}")
        return Capture(intent.id, intent.id, captured)

    def _find_intent(self, key: str) -> Any:
        query = f"metadata['{_META}']:'{key}'"
        try:
            found = self._call(lambda: self._client.v1.payment_intents.search(
                params={"query": query}))
            return found.data[0] if found.data else None
        except PaymentError:  # no Search API here (localstripe): scan the newest intents
            page = self._call(lambda: self._client.v1.payment_intents.list(
                params={"limit": 100}))
            hits = [i for i in page.data if _meta(i) == key]
            return hits[0] if hits else None

    def _find_refund(self, key: str, capture_id: str | None) -> Operation | None:
        if capture_id is None:
            return None
        page = self._call(lambda: self._client.v1.refunds.list(
            params={"payment_intent": capture_id, "limit": 100}))
        for refund in page.data:
            if _meta(refund) == key:
                return Operation("refund", refund.id, "succeeded", int(refund.amount))
        return None

    def _captured(self, intent: Any) -> int:
        received = intent.to_dict().get("amount_received")
        if received is not None:
            return int(received)
        # localstripe keeps no amount_received: the charge less the uncaptured rest,
        # which it books as a refund without our metadata.
        page = self._call(lambda: self._client.v1.refunds.list(
            params={"payment_intent": intent.id, "limit": 100}))
        rest = sum(int(r.amount) for r in page.data if not _meta(r))
        return int(intent.amount) - rest


def _authorization(intent: Any, currency: str) -> Authorization:
    if intent.status == "requires_capture":
        return Authorization(intent.id, "authorized", int(intent.amount), currency)
    error = intent.to_dict().get("last_payment_error") or {}
    return Authorization(intent.id, "declined", int(intent.amount), currency,
                         str(error.get("message") or f"payment {intent.status}"))


def _intent_of_error(error: stripe.CardError) -> str:
    body: dict[str, Any] = error.json_body if isinstance(error.json_body, dict) else {}
    intent = (body.get("error") or {}).get("payment_intent") or {}
    return str(intent.get("id") or "")


def _meta(obj: Any) -> str | None:
    """Our idempotency key from an object's metadata (None when absent)."""
    value = (obj.to_dict().get("metadata") or {}).get(_META)
    return None if value is None else str(value)
