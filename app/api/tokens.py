"""API tokens: random, shown once, stored as sha256 (they carry 256 bits, so a fast hash is enough)."""

import hashlib
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.single_flight import SingleFlight
from app.db.base import utcnow
from app.db.tables import ApiToken

PREFIX = "nnf_"


@dataclass(frozen=True)
class NewToken:
    id: str
    owner: str
    secret: str  # the only time the token itself exists outside the client


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(*, session: Session, owner: str, name: str | None = None) -> NewToken:
    secret = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        id=str(uuid.uuid4()), owner=owner, name=name, token_hash=hash_token(secret), created_at=utcnow()
    )
    session.add(row)
    session.flush()
    return NewToken(row.id, owner, secret)


def owner_of(*, session: Session, secret: str) -> str | None:
    """The owner a live token belongs to; None for unknown or revoked tokens."""
    if not secret.startswith(PREFIX):
        return None
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).first()
    return row.owner if row is not None and row.revoked_at is None else None


class OwnerCache:
    """Owners of recently seen tokens, by token hash, for `seconds`: a busy client's requests skip the
    database lookup (and the thread it needs). Only live tokens are kept; revocation (by the CLI, in another
    process) takes effect here when the entry expires."""

    def __init__(self, seconds: float, size: int = 10_000) -> None:
        self.seconds, self.size = seconds, size
        self.entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.lock = threading.Lock()
        self.lookups: SingleFlight[str | None] = SingleFlight()  # by secret: one lookup per token at a time

    def get(self, secret: str) -> str | None:
        key = hash_token(secret)
        with self.lock:
            found = self.entries.get(key)
            if found is None or found[1] < time.monotonic():
                return None
            return found[0]

    def put(self, secret: str, owner: str) -> None:
        if self.seconds <= 0:
            return
        key = hash_token(secret)
        with self.lock:
            self.entries[key] = (owner, time.monotonic() + self.seconds)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


def revoke_token(*, session: Session, token_id: str) -> bool:
    done = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return done.rowcount == 1  # type: ignore[attr-defined]


def list_tokens(*, session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at)))
