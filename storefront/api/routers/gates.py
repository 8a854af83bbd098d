"""Entry gate endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.concurrency import run_in_threadpool

from storefront.api.deps import ContainerDep
from storefront.api.schemas import EntryOut
from storefront.api.uploads import read_image
from storefront.security.api import Gate

router = APIRouter(prefix="/gates", tags=["gates"])


@router.post("/entry", response_model=EntryOut)
async def enter(c: ContainerDep, gate: Gate,
                image: Annotated[UploadFile, File(description="one palm capture")]) -> EntryOut:
    """Identify a palm and open a shopping session, or refuse with the reason.

    Signed gate devices only (headers ``X-Device-*``, see ``storefront.security``).
    """
    data = await read_image(image)
    # Identification is CPU-bound: keep it off the event loop.
    decision = await run_in_threadpool(c.gates.enter_by_palm, image=data,
                                       actor=f"device:{gate.id}")
    return EntryOut(admitted=decision.admitted, outcome=decision.outcome, reason=decision.reason,
                    session_id=decision.session_id, shopper_id=decision.shopper_id,
                    score=decision.score, identify_ms=decision.identify_ms)
