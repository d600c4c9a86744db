"""Progress callbacks: how stages report progress and logs, and how a worker cancels them."""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable


def resolve_hook(hook: Any) -> Any:
    """A caller's task-specific hook: a callable, None, or "module:attribute" (an import path stays
    JSON-safe on its way to training.launch's processes)."""
    if hook is None or callable(hook):
        return hook
    module, _, attr = str(hook).partition(":")
    return getattr(importlib.import_module(module), attr)


class StopTraining(Exception):
    """Raised inside a stage when a callback's should_stop() returns True."""


@runtime_checkable
class Callback(Protocol):
    """What a stage calls; every method is optional in practice (see Callbacks)."""

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Called after each step with the step's metrics."""

    def on_log(self, line: str) -> None:
        """Called with a human-readable line."""

    def should_stop(self) -> bool:
        """Polled between steps; True cancels the stage (StopTraining is raised)."""
        return False


class Callbacks:
    """A fan-out over zero or more callback objects, tolerant of missing methods."""

    def __init__(self, callbacks: list[Any] | Any | None = None) -> None:
        if callbacks is None:
            callbacks = []
        elif not isinstance(callbacks, list | tuple):
            callbacks = [callbacks]
        self.items = list(callbacks)
        self.history: list[tuple[str, int, dict[str, Any]]] = []

    def progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Report progress to every callback and keep it in history."""
        self.history.append((stage, step, dict(metrics)))
        for cb in self.items:
            if hasattr(cb, "on_progress"):
                cb.on_progress(stage, step, total, metrics)

    def log(self, line: str) -> None:
        """Send a log line to every callback."""
        for cb in self.items:
            if hasattr(cb, "on_log"):
                cb.on_log(line)

    def check_stop(self) -> None:
        """Raise StopTraining when any callback asks to stop."""
        if any(hasattr(cb, "should_stop") and cb.should_stop() for cb in self.items):
            raise StopTraining("stopped by callback")


class TqdmCallback:
    """A tqdm progress bar per stage, for the CLI."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Advance the stage's bar and show a few metrics."""
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, dynamic_ncols=True)
        bar.n = step
        bar.set_postfix(
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in list(metrics.items())[:5]}
        )
        bar.refresh()

    def on_log(self, line: str) -> None:
        """Print through tqdm so bars are not broken."""
        from tqdm import tqdm

        tqdm.write(line)

    def should_stop(self) -> bool:
        """The CLI never cancels."""
        return False
