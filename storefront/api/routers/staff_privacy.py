"""Data-subject requests handled by a manager (``/staff/privacy/...``).

A shopper registered at the store by staff (``POST /shoppers``) has no login, so cannot
use the portal: a manager (a role that signs in with a one-time code) exports or erases
their data on request, after checking who is asking. A shopper with a login is refused
(409 ``shopper_has_login``: they use the portal; :mod:`storefront.privacy.staff_requests`).
The same services as the portal: the export is the portal's archive (handed over at once,
never stored), the erasure the portal's account deletion (refused with 409 while a trip
is not settled). Both are
written to the audit log with actor ``staff:<manager id>``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response

from storefront.api.deps import ContainerDep
from storefront.api.routers.auth import PrivacyDep
from storefront.api.schemas import ID_PATTERN
from storefront.privacy.staff_requests import refuse_login_holder
from storefront.security.api import Manager

router = APIRouter(prefix="/staff/privacy", tags=["data-subject requests"])
ShopperIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]


@router.post("/shoppers/{shopper_id}/export", response_class=Response)
async def export_shopper(shopper_id: ShopperIdPath, who: Manager, p: PrivacyDep,
                         c: ContainerDep) -> Response:
    """The zip archive of everything held about the shopper (as ``GET
    /me/exports/{id}/download``), built now and not kept; 404 for an unknown shopper, 409
    for a shopper with a login (they export in the portal)."""
    await run_in_threadpool(refuse_login_holder, c.db, shopper_id)
    data = await run_in_threadpool(p.exports.export_now, shopper_id, actor=f"staff:{who.id}")
    return Response(data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{shopper_id}-export.zip"',
        "Cache-Control": "no-store"})


@router.delete("/shoppers/{shopper_id}")
async def delete_shopper(shopper_id: ShopperIdPath, who: Manager, p: PrivacyDep,
                         c: ContainerDep) -> Any:
    """Erase the shopper as ``DELETE /me`` does (personal data erased, accounting records
    kept under pseudonyms); 404 for an unknown shopper, 409 while a trip is not settled or
    for a shopper with a login (they delete in the portal). The answer says what was
    erased and what was kept."""
    await run_in_threadpool(refuse_login_holder, c.db, shopper_id)
    done = await run_in_threadpool(p.deletion.delete_account, shopper_id=shopper_id,
                                   actor=f"staff:{who.id}")
    return jsonable_encoder(asdict(done))
