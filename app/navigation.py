"""The areas of the product, shown in the top bar and on the start page by role."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from app.auth.models import User
from app.enums import Role


@dataclass(frozen=True)
class NavItem:
    """One area: where it lives, who sees it, one line on what it is for."""

    label: str
    href: str
    roles: frozenset[Role]
    blurb: str


START = NavItem("Start", "/", frozenset(Role), "Your areas.")


@lru_cache(maxsize=1)
def all_items() -> tuple[NavItem, ...]:
    """Start, then every domain's `routes.NAV` items (a list of NavItem), in domain order."""
    from app.discovery import domain_modules

    items = [START]
    for module in domain_modules("routes"):
        items.extend(getattr(module, "NAV", []))
    return tuple(items)


def nav_items(user: User | None) -> list[NavItem]:
    """The areas `user` may open, in menu order."""
    if user is None:
        return []
    return [item for item in all_items() if user.has_role(*item.roles)]
