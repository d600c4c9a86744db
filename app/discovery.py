"""Find each domain package's modules by role (routes, tasks) so no central list needs editing."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from types import ModuleType

import app


@lru_cache(maxsize=8)
def _domain_names() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(app.__path__) if m.ispkg))


def domain_modules(role: str) -> list[ModuleType]:
    """Import `app.<domain>.<role>` for every domain package that has one, in name order."""
    found = []
    for name in _domain_names():
        spec = importlib.util.find_spec(f"app.{name}.{role}")
        if spec is not None:
            found.append(importlib.import_module(f"app.{name}.{role}"))
    return found


def domain_module_names(role: str) -> list[str]:
    """Dotted names of `app.<domain>.<role>` modules that exist (without importing them)."""
    return [
        f"app.{name}.{role}"
        for name in _domain_names()
        if importlib.util.find_spec(f"app.{name}.{role}") is not None
    ]
