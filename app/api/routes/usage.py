"""/v1/usage: what the owner stores, by kind, against MAX_STORAGE_BYTES_PER_OWNER."""

from fastapi import APIRouter, Request

from app.api.deps import OwnerDep, SessionDep
from app.api.schemas import UsagePublic
from app.api.usage import usage_public

router = APIRouter(prefix="/v1/usage", tags=["usage"])


@router.get("", response_model=UsagePublic)
def read_usage(request: Request, session: SessionDep, owner: OwnerDep) -> UsagePublic:
    """Bytes and counts of the owner's jobs, checkpoints, metric rows, log lines and uploads."""
    limit = request.app.state.settings.max_storage_bytes_per_owner
    return usage_public(session=session, owner=owner, limit=limit)
