"""`Idempotency-Key` on POSTs: a replay returns the first response; the same key with another body is a 422;
a replay while the first request is still in flight is a 409. Keys are scoped by owner and route."""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.tables import IdempotencyKey
from models.errors import SpecError

ABANDONED_AFTER = timedelta(minutes=5)  # an in-flight key this old belongs to a request that died


class IdempotencyInFlight(RuntimeError):
    pass


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: Any
    headers: dict[str, str]
    replayed: bool = False

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status_code, headers=self.headers)


def request_hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _this_key(owner: str, route: str, key: str) -> ColumnElement[bool]:
    return and_(IdempotencyKey.owner == owner, IdempotencyKey.route == route, IdempotencyKey.key == key)


def begin(
    factory: sessionmaker[Session], *, owner: str, route: str, key: str, fingerprint: str
) -> Replay | None:
    """Reserve the key (committed at once, so concurrent requests see it); a Replay when it was used."""
    with factory() as session:
        session.execute(
            delete(IdempotencyKey).where(
                _this_key(owner, route, key),
                IdempotencyKey.status_code.is_(None),
                IdempotencyKey.created_at < utcnow() - ABANDONED_AFTER,
            )
        )
        session.add(
            IdempotencyKey(owner=owner, route=route, key=key, request_hash=fingerprint, created_at=utcnow())
        )
        try:
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
        row = session.scalars(select(IdempotencyKey).where(_this_key(owner, route, key))).one()
    if row.request_hash != fingerprint:
        raise SpecError.single("Idempotency-Key", key, "this key was used with a different request body")
    if row.status_code is None or row.response is None:
        raise IdempotencyInFlight("a request with this Idempotency-Key is still being processed")
    return Replay(row.status_code, row.response["body"], row.response["headers"], replayed=True)


def complete(
    session: Session,
    *,
    owner: str,
    route: str,
    key: str,
    status_code: int,
    body: Any,
    headers: dict[str, str],
) -> None:
    """Store the response in the caller's transaction, so it commits together with what it describes."""
    session.execute(
        update(IdempotencyKey)
        .where(_this_key(owner, route, key))
        .values(status_code=status_code, response={"body": body, "headers": headers})
    )


def abandon(factory: sessionmaker[Session], *, owner: str, route: str, key: str) -> None:
    """Free the key after a failed request, so the client may retry it."""
    with factory() as session:
        session.execute(
            delete(IdempotencyKey).where(_this_key(owner, route, key), IdempotencyKey.status_code.is_(None))
        )
        session.commit()


def run_once(
    factory: sessionmaker[Session],
    session: Session,
    *,
    owner: str,
    route: str,
    key: str | None,
    fingerprint: str,
    produce: Callable[[], tuple[int, Any, dict[str, str]]],
) -> Replay:
    """Run `produce` (which writes through `session`) and commit; with a key, at most once per key."""
    if key is None:
        status_code, body, headers = produce()
        session.commit()
        return Replay(status_code, body, headers)
    replay = begin(factory, owner=owner, route=route, key=key, fingerprint=fingerprint)
    if replay is not None:
        return replay
    try:
        status_code, body, headers = produce()
        complete(
            session, owner=owner, route=route, key=key, status_code=status_code, body=body, headers=headers
        )
        session.commit()
    except BaseException:
        session.rollback()
        abandon(factory, owner=owner, route=route, key=key)
        raise
    return Replay(status_code, body, headers)


def run_route_once(
    request: Request,
    session: Session,
    *,
    owner: str,
    key: str | None,
    fingerprint: str,
    produce: Callable[[], tuple[int, Any, dict[str, str]]],
) -> Replay:
    """`run_once` for the POST route serving `request`, keyed by its method and path template."""
    route = f"{request.method} {request.scope['route'].path}"
    return run_once(
        request.app.state.session_factory,
        session,
        owner=owner,
        route=route,
        key=key,
        fingerprint=fingerprint,
        produce=produce,
    )
