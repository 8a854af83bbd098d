"""Entry gate: palm capture -> 1:N identification -> shopping session opened, or refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from identity.service import IdentityService

from cart.service import SessionService
from storefront.clock import Clock
from storefront.sessions import SessionReadModel
from storefront.shoppers import ShopperService


@dataclass(frozen=True)
class EntryDecision:
    """What the gate does. ``admitted`` opens it; otherwise ``reason`` is shown.

    ``score`` is the identification score in [0, 1]; ``identify_ms`` the time
    the 1:N search took, in milliseconds.
    """

    admitted: bool
    outcome: Literal["identified", "not_identified", "ambiguous"]
    reason: str
    session_id: str | None
    shopper_id: str | None
    score: float
    identify_ms: float


class GateService:
    """Opens shopping sessions for identified shoppers."""

    def __init__(self, *, identity: IdentityService, carts: SessionService,
                 read_model: SessionReadModel, shoppers: ShopperService,
                 store_id: str, clock: Clock) -> None:
        self._identity = identity
        self._carts = carts
        self._read_model = read_model
        self._shoppers = shoppers
        self._store_id = store_id
        self._clock = clock

    def enter_by_palm(self, *, image: bytes) -> EntryDecision:
        """Identify the palm in ``image`` (encoded bytes) and open a session.

        Not identified or ambiguous -> refused with the reason (an ambiguous
        match is never guessed). Raises identity's InvalidImageError or
        AcquisitionError for unusable captures.
        """
        result = self._identity.identify(image=image)
        if result.outcome != "identified" or result.subject_id is None:
            return EntryDecision(False, result.outcome, result.reason, None, None,
                                 result.score, result.elapsed_ms)
        shopper_id = result.subject_id
        self._shoppers.get(shopper_id)
        session_id = self.open_session(shopper_id=shopper_id, entry_method="palm")
        return EntryDecision(True, "identified", "welcome", session_id, shopper_id,
                             result.score, result.elapsed_ms)

    def open_session(self, *, shopper_id: str, entry_method: str) -> str:
        """Open a shopping session for a known shopper; returns its id."""
        session_id = f"ses_{uuid.uuid4().hex}"
        at = self._clock()
        self._carts.open(session_id, shopper_id, self._store_id, entry_method)
        self._read_model.opened(session_id=session_id, shopper_id=shopper_id,
                                store_id=self._store_id, entry_method=entry_method, at=at)
        return session_id
