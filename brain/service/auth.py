"""Bearer API key on every endpoint but health."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from brain.service.errors import ApiError

_bearer = HTTPBearer(auto_error=False)


async def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected = request.app.state.runtime.api_key
    if expected is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "A valid API key is required (Authorization: Bearer KEY).",
                       {"WWW-Authenticate": "Bearer"})  # fmt: skip


Authorized = Depends(require_key)
