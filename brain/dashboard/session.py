"""The dashboard's login: the operator key buys a session cookie; actions also need a CSRF token.

Both are signed with the operator key rather than kept in memory, so that every brain replica behind a load
balancer accepts a session that another one opened, and changing the key ends every session. The cookie is
HttpOnly and SameSite=Strict; the CSRF token (a synchronizer token derived from the session) is handed to the
page by ``GET /dashboard/api/session`` and must come back in the ``X-CSRF-Token`` header of every action, which
a page of another site can neither read nor set.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

from fastapi import Request

from brain.service.errors import ApiError

log = logging.getLogger("brain.dashboard")
COOKIE = "ownchat_operator"
CSRF_HEADER = "X-CSRF-Token"
SESSION_S = 12 * 3600


def _sign(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def new_session(key: str, now: float | None = None) -> str:
    """A cookie value: expiry, a nonce, and their signature."""
    expires = int((now if now is not None else time.time()) + SESSION_S)
    body = f"{expires}.{secrets.token_hex(16)}"
    return f"{body}.{_sign(key, 'session:' + body)}"


def valid_session(key: str, cookie: str | None, now: float | None = None) -> bool:
    if not cookie or cookie.count(".") != 2:
        return False
    expires, nonce, signature = cookie.split(".")
    if not hmac.compare_digest(signature, _sign(key, f"session:{expires}.{nonce}")):
        return False
    return expires.isdigit() and int(expires) > (now if now is not None else time.time())


def csrf_token(key: str, cookie: str) -> str:
    return _sign(key, "csrf:" + cookie)


def key_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def operator_key(request: Request) -> str:
    key = request.app.state.runtime.settings.secrets.operator_key
    if key is None:  # the router is only mounted with a key; this guards a key removed from a live runtime
        raise ApiError(404, "not_found", "The operator's dashboard is off (set OWNCHAT_OPERATOR_KEY).")
    return str(key.get_secret_value())


def require_session(request: Request) -> str:
    """The session cookie, if it is valid (401 otherwise)."""
    cookie = request.cookies.get(COOKIE)
    if not valid_session(operator_key(request), cookie):
        raise ApiError(401, "unauthorized", "Log in with the operator key first.")
    assert cookie is not None
    return cookie


def require_csrf(request: Request) -> None:
    """A valid session and its CSRF token in the header (403 without the token). A refusal is said in the log:
    nobody without the key may act, and an operator should know that someone tried."""
    client = request.client.host if request.client else None
    try:
        cookie = require_session(request)
    except ApiError:
        log.warning("operator action %s from %s refused: no session", request.url.path, client)
        raise
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode(), csrf_token(operator_key(request), cookie).encode()):
        log.warning("operator action %s from %s refused: no valid CSRF token", request.url.path, client)
        raise ApiError(403, "csrf", f"This action needs the page's CSRF token in the {CSRF_HEADER} header.")
