"""The areas of the product, shown in the top bar and on the start page by role."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.models import User
from app.enums import Role


@dataclass(frozen=True)
class NavItem:
    """One area: where it lives, who sees it, one line on what it is for."""

    label: str
    href: str
    roles: frozenset[Role]
    blurb: str


NAV: list[NavItem] = [
    NavItem("Start", "/", frozenset(Role), "Your areas."),
]


def nav_items(user: User | None) -> list[NavItem]:
    """The areas `user` may open, in menu order."""
    if user is None:
        return []
    return [item for item in NAV if user.has_role(*item.roles)]
