"""Storage per owner: the usage report and the refusal of what would pass MAX_STORAGE_BYTES_PER_OWNER."""

from dataclasses import asdict

from sqlalchemy.orm import Session

from app.api.schemas import AmountPublic, UsagePublic
from app.db.usage import owner_usage

# A job's first checkpoint holds at least its weights, 4 bytes per parameter (fp32; the optimizer's state
# and the spec come on top): the least a new job will store.
BYTES_PER_PARAMETER = 4


class StorageLimitExceeded(RuntimeError):
    """What a request would store passes the owner's limit (413)."""

    def __init__(self, *, what: str, limit: int, usage: int, adding: int) -> None:
        super().__init__(
            f"{what} would bring this owner's storage to {usage + adding:,} bytes, over "
            f"MAX_STORAGE_BYTES_PER_OWNER ({limit:,} bytes; {usage:,} in use now): delete jobs, checkpoints "
            "or datasets first (`nnforge usage` shows what takes the space)"
        )
        self.limit, self.usage, self.adding = limit, usage, adding


def ensure_room(
    *, session: Session, owner: str, limit: int | None, adding: int, what: str, flushed: bool = False
) -> None:
    """Raise StorageLimitExceeded when the owner's usage plus `adding` bytes passes `limit` (None: no
    limit). `flushed`: the `adding` bytes are already in this session's rows (and so in the usage)."""
    if limit is None:
        return
    usage = owner_usage(session, owner).total_bytes - (adding if flushed else 0)
    if usage + adding > limit:
        raise StorageLimitExceeded(what=what, limit=limit, usage=usage, adding=adding)


def usage_public(*, session: Session, owner: str, limit: int | None) -> UsagePublic:
    usage = owner_usage(session, owner)
    kinds = {name: AmountPublic(**value) for name, value in asdict(usage).items()}
    return UsagePublic(owner=owner, total_bytes=usage.total_bytes, limit_bytes=limit, **kinds)
