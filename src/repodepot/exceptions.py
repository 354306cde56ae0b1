"""The exception hierarchy: one base, subclasses named after the condition.

The docstring of each class is its default message. The web layer maps each
class to an HTTP status in one place (`repodepot.web.errors`).
"""

from __future__ import annotations


class RepodepotError(Exception):
    """Something went wrong in repodepot."""

    code = "error"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.field = field
        super().__init__(self.message)


class ConfigurationError(RepodepotError):
    """The configuration is invalid."""

    code = "invalid_configuration"


class InvalidInput(RepodepotError):
    """The request is invalid."""

    code = "invalid"


class NotAuthenticated(RepodepotError):
    """A valid API token is required."""

    code = "unauthenticated"


class PermissionDenied(RepodepotError):
    """You do not have permission to do this."""

    code = "forbidden"


class NotFound(RepodepotError):
    """Not found."""

    code = "not_found"


class AlreadyExists(RepodepotError):
    """It already exists."""

    code = "conflict"


class DatabaseUnavailable(RepodepotError):
    """The database cannot be reached."""

    code = "database_unavailable"


class Unavailable(RepodepotError):
    """Not answerable now; try again shortly."""

    code = "unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TooManyRequests(RepodepotError):
    """Too many requests at once; try again shortly."""

    code = "too_many_requests"

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)
