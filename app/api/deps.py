"""Shared route dependencies as `Annotated` aliases."""

import asyncio
import math
from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.api.tokens import OwnerCache, owner_of
from app.core.rate_limit import client_key
from app.core.settings import Settings

LOCAL_OWNER = "local"  # the owner of everything when auth is off (loopback only)
UNAUTHENTICATED_TOO_OFTEN = "too many requests without a valid token from this address"
bearer = HTTPBearer(auto_error=False, description="an API token: `nnforge token create`")


class Unauthorized(PermissionError):
    pass


class RateLimited(RuntimeError):
    def __init__(self, retry_after: float, reason: str = "too many requests") -> None:
        super().__init__(f"{reason}; retry in {retry_after:.1f} s")
        self.retry_after = retry_after


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_celery(request: Request) -> Celery:
    return request.app.state.celery  # type: ignore[no-any-return]


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CeleryDep = Annotated[Celery, Depends(get_celery)]


async def get_owner(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The owner behind the request's bearer token (401 otherwise), within its request rate (429). Async, so
    a token seen within TOKEN_CACHE_SECONDS costs no worker thread and no database round trip."""
    if not request.app.state.settings.auth:
        owner = LOCAL_OWNER
    else:
        if credentials is None:
            raise _refused(request, "a bearer token is required (Authorization: Bearer nnf_…)")
        owner = await _token_owner(request, credentials.credentials)
    wait = request.app.state.rate_limiter.retry_after(owner)
    if wait > 0:
        raise RateLimited(math.ceil(wait))
    return owner


async def _token_owner(request: Request, secret: str) -> str:
    cache: OwnerCache = request.app.state.token_owners
    owner = cache.get(secret)
    if owner is None:
        # A client over its 401s waits before the next lookup: a flood of bad tokens reads no database.
        wait = request.app.state.unauthenticated_limiter.waiting(_client(request))
        if wait > 0:
            raise RateLimited(math.ceil(wait), UNAUTHENTICATED_TOO_OFTEN)

        def look_up() -> str | None:
            with request.app.state.session_factory() as session:
                return owner_of(session=session, secret=secret)

        def keep(found: str | None) -> None:
            if found is not None:
                cache.put(secret, found)

        owner = await asyncio.shield(cache.lookups.call(secret, look_up, keep))
        if owner is None:
            raise _refused(request, "unknown or revoked token")
    return owner


def _client(request: Request) -> str:
    return client_key(request.client.host if request.client else None)


def _refused(request: Request, reason: str) -> Exception:
    """401, or 429 once the client's address is over UNAUTHENTICATED_RATE_LIMIT_PER_SECOND / _BURST."""
    wait = request.app.state.unauthenticated_limiter.retry_after(_client(request))
    return RateLimited(math.ceil(wait), UNAUTHENTICATED_TOO_OFTEN) if wait > 0 else Unauthorized(reason)


OwnerDep = Annotated[str, Depends(get_owner)]
