"""Gate entry with an app entry code (``POST /me/entry-code``) instead of a palm."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from storefront.api.routers.auth import PrivacyDep
from storefront.errors import EntryRefused
from storefront.security.api import Gate

router = APIRouter(prefix="/gates", tags=["gates"])


class EntryCodeIn(BaseModel):
    """The code the gate read from the shopper's app (dashes and spaces ignored)."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=10, max_length=14, pattern=r"^[0-9A-Za-z -]+$")


class CodeEntryOut(BaseModel):
    """``admitted`` opens the gate; otherwise ``reason`` is shown."""

    admitted: bool
    reason: str
    session_id: str | None
    shopper_id: str | None


@router.post("/entry/code", response_model=CodeEntryOut)
def enter_by_code(body: EntryCodeIn, gate: Gate, p: PrivacyDep) -> CodeEntryOut:
    """Redeem an app entry code once and open a session (signed gate devices only)."""
    try:
        session_id, shopper_id = p.entry_codes.redeem(body.code)
    except EntryRefused as exc:
        return CodeEntryOut(admitted=False, reason=exc.reason, session_id=None, shopper_id=None)
    return CodeEntryOut(admitted=True, reason="welcome", session_id=session_id,
                        shopper_id=shopper_id)
