"""The comms settings: read them (secrets masked) and change some; a change is stored (it
wins over the environment) and applied at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from chatbridge.api.comms.base import ERRORS, storing
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.crm.settings import SECRETS, CommsSettings
from chatbridge.crm.transcription import provider_status
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge

router = APIRouter()

_MASK = "********"


def _settings_view(bridge: Bridge) -> dict[str, Any]:
    s = bridge.comms_settings()
    return {"settings": s.public_view(), "transcription": provider_status(s)}


@router.get("/settings", responses=ERRORS)
async def get_settings(bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Every comms setting; secrets are masked, with ``<name>_set`` flags."""
    return _settings_view(bridge)


@router.patch(
    "/settings", responses={**ERRORS, **error_responses({422: "unknown or invalid setting"})}
)
async def patch_settings(
    request: Request, changes: dict[str, Any], bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Change settings (only the keys given). A secret sent back masked is left as it is."""
    current = bridge.comms_settings()
    known = set(CommsSettings.model_fields)
    unknown = sorted(k for k in changes if k not in known)
    if unknown:
        raise BadInput(
            "invalid_request", f"unknown setting(s): {', '.join(unknown)}", status_code=422
        )
    changes = {k: v for k, v in changes.items() if not (k in SECRETS and v == _MASK)}
    try:
        updated = current.updated(changes)
    except ValidationError as exc:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = details[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise BadInput(
            "invalid_request", f"{where}: {first['msg']}", status_code=422, details=details
        ) from None
    before, after = current.model_dump(mode="json"), updated.model_dump(mode="json")
    changed = {k: after[k] for k in changes if after[k] != before[k]}
    async with storing():
        await bridge.store.save_comms_settings(changed)
    bridge.set_comms_settings(updated)
    bridge.transcriptions.wake()
    # the audit row names what changed (names only: the values may be secrets)
    request.state.audit_details = {"changed": sorted(changed)}
    return {**_settings_view(bridge), "changed": sorted(changed)}
