"""Errors that are about what the user gave, not about the code."""

from __future__ import annotations


class InputError(ValueError):
    """A batch, a model file or a setting that can not be used as it is; the message says what and
    where. `python -m training` prints it as one line (a ValueError, so callers that catch those,
    such as the web app's import, keep working)."""
