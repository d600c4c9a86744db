"""User management and API tokens for admins; the console home's counts."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.models import ApiToken, User
from app.db import utcnow
from app.enums import AssignmentStatus, PIIStatus, Role
from app.errors import AppError, Conflict, NotFound
from app.exports.models import ExportBatch
from app.labeling.models import Assignment
from app.prompts.models import Prompt, PromptQueue

TOKEN_SCOPES = ("prompts:write",)


def list_users(db: Session) -> list[User]:
    """Every user, active first, by username."""
    return list(db.scalars(select(User).order_by(User.is_active.desc(), User.username)))


def get_user(db: Session, user_id: int) -> User:
    """A user by id, or NotFound."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("There is no such user.")
    return user


def _roles(values: Iterable[str]) -> list[Role]:
    try:
        return [Role(v) for v in values]
    except ValueError:
        raise AppError("Roles are labeler, admin and ops.") from None


def invite_user(
    db: Session,
    username: str,
    roles: Iterable[str],
    display_name: str = "",
    email: str = "",
    password: str = "",
) -> tuple[User, str]:
    """Create a user; without a password a temporary one is generated and returned once."""
    plain = password or secrets.token_urlsafe(12)
    user = auth.create_user(db, username, plain, _roles(roles), display_name.strip()[:128])
    user.email = email.strip()[:254] or None
    db.flush()
    return user, ("" if password else plain)


def set_roles(db: Session, admin: User, user_id: int, roles: Iterable[str]) -> User:
    """Replace a user's roles; an admin cannot remove their own admin role (no lock-out)."""
    user = get_user(db, user_id)
    new = _roles(roles)
    if user.id == admin.id and Role.admin not in new:
        raise Conflict("You cannot remove your own admin role.")
    auth.set_roles(db, user, new)
    return user


def release_leases(db: Session, user_id: int) -> int:
    """Release a user's open leases so the slots return to the pool; labels stay."""
    result = db.execute(
        update(Assignment)
        .where(Assignment.user_id == user_id, Assignment.status == AssignmentStatus.leased.value)
        .values(status=AssignmentStatus.released.value, finished_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    db.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def deactivate(db: Session, admin: User, user_id: int) -> tuple[User, int]:
    """Deactivate: sign-in refused, sessions end (epoch bump), open leases released, labels kept."""
    user = get_user(db, user_id)
    if user.id == admin.id:
        raise Conflict("You cannot deactivate yourself.")
    released = release_leases(db, user.id)
    if user.is_active:
        user.is_active = False
        user.session_epoch += 1
    db.flush()
    return user, released


def reactivate(db: Session, user_id: int) -> User:
    """Let a deactivated user sign in again."""
    user = get_user(db, user_id)
    user.is_active = True
    db.flush()
    return user


def reset_password(db: Session, user_id: int) -> tuple[User, str]:
    """Give a user a new temporary password (returned once); their sessions end."""
    from app.auth.passwords import hash_password

    user = get_user(db, user_id)
    plain = secrets.token_urlsafe(12)
    user.password_hash = hash_password(plain)
    user.session_epoch += 1
    db.flush()
    return user, plain


def list_tokens(db: Session) -> list[ApiToken]:
    """API tokens, newest first (only prefixes are shown; secrets are never stored)."""
    return list(db.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


def create_token(db: Session, admin: User, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
    """A new API token with known scopes; the plain secret is returned once."""
    chosen = list(scopes) or ["prompts:write"]
    unknown = set(chosen) - set(TOKEN_SCOPES)
    if unknown:
        raise AppError(f"Unknown scope: {', '.join(sorted(unknown))}.")
    return auth.create_api_token(db, name, chosen, admin)


def revoke_token(db: Session, token_id: int) -> ApiToken:
    """Revoke a token; requests with it are refused from now on."""
    return auth.revoke_api_token(db, token_id)


def home_counts(db: Session) -> dict[str, Any]:
    """What the console home shows at a glance."""
    return {
        "queues": db.scalar(select(func.count()).select_from(PromptQueue)) or 0,
        "paused_queues": db.scalar(
            select(func.count()).select_from(PromptQueue).where(PromptQueue.is_paused.is_(True))
        )
        or 0,
        "prompts": db.scalar(select(func.count()).select_from(Prompt)) or 0,
        "held": db.scalar(
            select(func.count()).select_from(Prompt).where(Prompt.pii_status == PIIStatus.held.value)
        )
        or 0,
        "users": db.scalar(select(func.count()).select_from(User).where(User.is_active.is_(True))) or 0,
        "exports": db.scalar(select(func.count()).select_from(ExportBatch)) or 0,
    }
