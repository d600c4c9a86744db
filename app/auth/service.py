"""Users, login with throttling, and API tokens. Services flush; the caller commits."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from app.auth.models import ApiToken, LoginAttempt, User, UserRole
from app.auth.passwords import hash_password, needs_rehash, verify_password
from app.config import Settings
from app.db import utcnow
from app.enums import Role
from app.errors import AppError, Conflict, Throttled

MIN_PASSWORD_LEN = 8


def get_user(db: Session, user_id: int) -> User | None:
    """A user by id, with its roles in the same query (every request asks for them)."""
    return db.get(User, user_id, options=[joinedload(User.role_rows)])


def get_user_by_username(db: Session, username: str) -> User | None:
    """A user by username (case-insensitive)."""
    return db.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def create_user(
    db: Session, username: str, password: str, roles: Iterable[Role | str], display_name: str = ""
) -> User:
    """Create a user with roles; refuses a taken username or a short password."""
    username = username.strip()
    if (
        not username
        or len(username) > 64
        or not username.replace("_", "").replace("-", "").replace(".", "").isalnum()
    ):
        raise AppError("Username must be 1-64 letters, digits, '.', '-' or '_'.")
    if len(password) < MIN_PASSWORD_LEN:
        raise AppError(f"Password must be at least {MIN_PASSWORD_LEN} characters.")
    role_set = {Role(r) for r in roles}
    if not role_set:
        raise AppError("A user needs at least one role.")
    if get_user_by_username(db, username) is not None:
        raise Conflict(f"User {username!r} already exists.")
    user = User(
        username=username, display_name=display_name or username, password_hash=hash_password(password)
    )
    user.role_rows = [UserRole(role=r.value) for r in sorted(role_set)]
    db.add(user)
    db.flush()
    return user


def set_roles(db: Session, user: User, roles: Iterable[Role | str]) -> None:
    """Replace a user's roles."""
    role_set = {Role(r) for r in roles}
    if not role_set:
        raise AppError("A user needs at least one role.")
    user.role_rows = [UserRole(role=r.value) for r in sorted(role_set)]
    db.flush()


def _recent_failures(
    db: Session, settings: Settings, *, username: str | None = None, ip: str | None = None
) -> int:
    since = utcnow() - timedelta(seconds=settings.login_window_s)
    q = (
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.success.is_(False), LoginAttempt.at >= since)
    )
    if username is not None:
        q = q.where(LoginAttempt.username == username)
    if ip is not None:
        q = q.where(LoginAttempt.ip == ip)
    return db.scalar(q) or 0


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: the user (None: wrong credentials) and a delay to apply
    before answering (non-zero while the username is under attack from many clients)."""

    user: User | None
    delay_s: float = 0.0


def authenticate(db: Session, settings: Settings, username: str, password: str, ip: str) -> SignIn:
    """Check credentials under throttling and record the attempt.

    Refused outright (Throttled): too many failures of this username from this client, or of any
    username from this client. Failures of the username from everywhere only slow it down: the
    password is still checked, so an attacker cannot lock its owner out.
    """
    key = username.strip().lower()[:64]
    ip = ip[:64]
    if (
        _recent_failures(db, settings, username=key, ip=ip) >= settings.login_max_failures
        or _recent_failures(db, settings, ip=ip) >= settings.login_max_failures * 4
    ):
        minutes = max(1, settings.login_window_s // 60)
        raise Throttled(f"Too many failed sign-in attempts. Try again in {minutes} minutes.")
    slow = _recent_failures(db, settings, username=key) >= settings.login_user_max_failures
    delay = settings.login_slow_delay_s if slow else 0.0
    user = get_user_by_username(db, key)
    ok = verify_password(user.password_hash if user else None, password)
    ok = ok and user is not None and user.is_active
    db.add(LoginAttempt(username=key, ip=ip, success=ok))
    if not ok or user is None:
        db.flush()
        return SignIn(None, delay)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    db.flush()
    return SignIn(user, delay)


def end_sessions(db: Session, user: User) -> None:
    """Invalidate every session cookie issued to `user` (sessions are signed cookies, not rows)."""
    user.session_epoch = user.session_epoch + 1
    db.flush()


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(
    db: Session, name: str, scopes: Iterable[str], created_by: User | None, days: int | None = None
) -> tuple[ApiToken, str]:
    """Create an API token valid for `days` (API_TOKEN_DAYS); the plain token is returned once and
    only its hash is stored."""
    from app.config import get_settings

    if not name.strip():
        raise AppError("A token needs a name.")
    plain = "rlhf_" + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name.strip()[:128],
        prefix=plain[:12],
        token_hash=_hash_token(plain),
        scopes=sorted(set(scopes)),
        created_by_id=created_by.id if created_by else None,
        expires_at=utcnow() + timedelta(days=days or get_settings().api_token_days),
    )
    db.add(token)
    db.flush()
    return token, plain


def token_for(db: Session, plain: str) -> ApiToken | None:
    """The live token matching a presented secret: not revoked, not expired, and its creator
    (when a user made it) still active."""
    token = db.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(plain)))
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and _aware(token.expires_at) <= utcnow():
        return None
    if token.created_by_id is not None:
        creator = db.get(User, token.created_by_id)
        if creator is None or not creator.is_active:
            return None
    token.last_used_at = utcnow()
    return token


def _aware(at: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def change_password(db: Session, user: User, current: str, new: str, repeat: str) -> User:
    """Set the user's own password after checking the current one; other sessions end."""
    if not verify_password(user.password_hash, current):
        raise AppError("The current password is wrong.", status_code=422)
    if len(new) < MIN_PASSWORD_LEN:
        raise AppError(f"The new password must be at least {MIN_PASSWORD_LEN} characters.", status_code=422)
    if new != repeat:
        raise AppError("The two new passwords differ.", status_code=422)
    if new == current:
        raise AppError("Choose a password different from the current one.", status_code=422)
    user.password_hash = hash_password(new)
    user.session_epoch += 1
    db.flush()
    return user


def revoke_api_token(db: Session, token_id: int) -> ApiToken:
    """Revoke a token; later requests with it are refused."""
    token = db.get(ApiToken, token_id)
    if token is None:
        raise AppError("No such token.", status_code=404)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    db.flush()
    return token
