"""Who may call a route: one shared dependency per rule, and the CSRF check it carries.

Every route declares exactly one rule (`public`, `signed_in`, `roles(...)`, `api_token(...)`);
tests/auth/test_route_matrix.py fails for a route without one.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth import service
from app.auth.models import ApiToken, User
from app.deps import DB
from app.enums import Role
from app.errors import CSRFError, Forbidden, NotAuthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_UNSET = object()


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


async def sent_csrf(request: Request) -> str | None:
    """The CSRF token a state-changing request carries (header or form field), if any.

    Async and free of database work: the rules below are plain functions that FastAPI runs in
    its thread pool, so a slow database (or a SQLite write lock) never blocks the event loop
    that the requests holding the lock need in order to finish.
    """
    if request.method in SAFE_METHODS:
        return None
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    return sent


SentCSRF = Annotated[str | None, Depends(sent_csrf)]


def check_csrf(request: Request, sent: str | None) -> None:
    """Refuse a state-changing request whose token (form field or header) does not match."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get("csrf")
    if not expected or not sent or not hmac.compare_digest(str(expected), sent):
        raise CSRFError("The form expired or did not come from this site. Reload the page and try again.")


def login_session(request: Request, user: User) -> None:
    """Start a fresh session for `user` (a new CSRF token: no fixation across login)."""
    request.session.clear()
    request.session["uid"] = user.id
    request.session["epoch"] = user.session_epoch
    request.session["csrf"] = secrets.token_urlsafe(32)


def session_user(request: Request, db: Session) -> User | None:
    """The signed-in, active user of this request's session, if any."""
    cached = getattr(request.state, "user", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]
    uid = request.session.get("uid")
    user = service.get_user(db, int(uid)) if isinstance(uid, int) else None
    if user is not None and (not user.is_active or request.session.get("epoch") != user.session_epoch):
        request.session.clear()
        user = None
    request.state.user = user
    return user


class AccessRule:
    """Base class of the route rules; the route matrix test finds instances in each route."""

    name = "rule"
    allowed_roles: frozenset[Role] = frozenset()
    anonymous_ok = False
    token_scope: str | None = None

    def describe(self) -> str:
        """A short human description, for the matrix test's messages."""
        return self.name


class _Public(AccessRule):
    name = "public"
    anonymous_ok = True

    def __call__(self, request: Request, db: DB, sent: SentCSRF) -> User | None:
        check_csrf(request, sent)
        return session_user(request, db)


class _SignedIn(AccessRule):
    name = "signed_in"
    allowed_roles = frozenset(Role)

    def __call__(self, request: Request, db: DB, sent: SentCSRF) -> User:
        user = session_user(request, db)
        if user is None:
            raise NotAuthenticated("Please sign in.")
        check_csrf(request, sent)
        return user


class _Roles(AccessRule):
    def __init__(self, *roles: Role) -> None:
        self.allowed_roles = frozenset(roles)
        self.name = "roles(" + ",".join(sorted(r.value for r in roles)) + ")"

    def __call__(self, request: Request, db: DB, sent: SentCSRF) -> User:
        user = session_user(request, db)
        if user is None:
            raise NotAuthenticated("Please sign in.")
        if not user.has_role(*self.allowed_roles):
            raise Forbidden("Your account does not have access to this page.")
        check_csrf(request, sent)
        return user


@dataclass(frozen=True)
class Claim:
    """What a session cookie claims: a user id and the epoch it was issued under (unchecked)."""

    uid: int
    epoch: Any


class _LabelerClaim(AccessRule):
    """The labeler rule of the one-hop routes (app.labeling.fast), run on the event loop.

    It refuses a session without a user (401) and a state-changing request without the session's
    CSRF token (403), touching no database; the route's own transaction then checks the claim
    against the users row (active, same epoch: 401 otherwise; the labeler role: 403 otherwise)
    in its first statement.
    """

    name = "roles(labeler)"
    allowed_roles = frozenset({Role.labeler})

    async def __call__(self, request: Request) -> Claim:
        uid = request.session.get("uid")
        if not isinstance(uid, int):
            raise NotAuthenticated("Please sign in.")
        check_csrf(request, await sent_csrf(request))
        return Claim(uid, request.session.get("epoch"))


class _ApiToken(AccessRule):
    """Bearer-token access for machine clients; no cookies, so no CSRF."""

    def __init__(self, scope: str) -> None:
        self.token_scope = scope
        self.name = f"api_token({scope})"

    def __call__(self, request: Request, db: DB) -> ApiToken:
        header = request.headers.get("authorization", "")
        scheme, _, plain = header.partition(" ")
        if scheme.lower() != "bearer" or not plain:
            raise NotAuthenticated("Send an API token as 'Authorization: Bearer <token>'.")
        token = service.token_for(db, plain.strip())
        if token is None:
            raise NotAuthenticated("The API token is unknown or revoked.")
        if self.token_scope not in token.scopes:
            raise Forbidden(f"The API token lacks the {self.token_scope!r} scope.")
        return token


public = _Public()
labeler_claim = _LabelerClaim()
signed_in = _SignedIn()
labeler = _Roles(Role.labeler)
admin = _Roles(Role.admin)
ops = _Roles(Role.ops)
admin_or_ops = _Roles(Role.admin, Role.ops)


def roles(*allowed: Role) -> AccessRule:
    """A rule admitting any of `allowed`."""
    return _Roles(*allowed)


def api_token(scope: str) -> AccessRule:
    """A rule admitting API tokens that carry `scope`."""
    return _ApiToken(scope)


CurrentUser = Annotated[User, Depends(signed_in)]
LabelerUser = Annotated[User, Depends(labeler)]
AdminUser = Annotated[User, Depends(admin)]
OpsUser = Annotated[User, Depends(ops)]
StaffUser = Annotated[User, Depends(admin_or_ops)]
MaybeUser = Annotated[User | None, Depends(public)]
LabelerClaim = Annotated[Claim, Depends(labeler_claim)]


def rule_of(dependant: Any) -> AccessRule | None:
    """The access rule a route's dependency tree carries (None: the route has no rule)."""
    stack = list(getattr(dependant, "dependencies", []))
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, AccessRule):
            return dep.call
        stack.extend(dep.dependencies)
    return None
