"""Domain errors that routes turn into clear pages or JSON, never tracebacks."""

from __future__ import annotations


class AppError(Exception):
    """A failure with a message meant for the user, and the HTTP status it maps to."""

    status_code = 400

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class NotFound(AppError):
    """The thing does not exist, or the user may not know that it does."""

    status_code = 404


class Conflict(AppError):
    """The request clashes with the current state (double submit, lost lease)."""

    status_code = 409


class AlreadySubmitted(Conflict):
    """A second, different submission of a task this labeler already submitted: nothing was stored."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"This task was already submitted (in another tab or window); the {what} you just sent "
            "was different and was not stored."
        )


class NotAuthenticated(AppError):
    """No valid session or token."""

    status_code = 401


class Forbidden(AppError):
    """Authenticated, but the role or object is not theirs."""

    status_code = 403


class CSRFError(Forbidden):
    """A state-changing request without a valid CSRF token."""


class Throttled(AppError):
    """Too many attempts; try again later."""

    status_code = 429
