"""Shared route dependencies as `Annotated` aliases."""

import math
from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.settings import Settings
from app.tokens import owner_of

LOCAL_OWNER = "local"  # the owner of everything when auth is off (loopback only)
bearer = HTTPBearer(auto_error=False, description="an API token: `nnforge token create`")


class Unauthorized(PermissionError):
    pass


class RateLimited(RuntimeError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many requests; retry in {retry_after:.1f} s")
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


def get_owner(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The owner behind the request's bearer token (401 otherwise), within its request rate (429)."""
    if not request.app.state.settings.auth:
        owner = LOCAL_OWNER
    else:
        if credentials is None:
            raise Unauthorized("a bearer token is required (Authorization: Bearer nnf_…)")
        found = owner_of(session=session, secret=credentials.credentials)
        if found is None:
            raise Unauthorized("unknown or revoked token")
        owner = found
    wait = request.app.state.rate_limiter.retry_after(owner)
    if wait > 0:
        raise RateLimited(math.ceil(wait))
    return owner


OwnerDep = Annotated[str, Depends(get_owner)]
