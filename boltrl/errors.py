"""The exception tree. Every boltrl error says what to fix.

`http_status` lets the server map an error to a response in one place, and lets the HTTP client map
a response back to the same error class, so callers catch the same exception whatever store they hold.
"""

from __future__ import annotations


class BoltrlError(Exception):
    """Base class of every error boltrl raises on purpose."""

    http_status = 500


class InvalidInputError(BoltrlError, ValueError):
    """A request or argument is malformed; the message names the field."""

    http_status = 400


class UnauthorizedError(BoltrlError):
    """A bearer token is missing or wrong."""

    http_status = 401


class ForbiddenError(BoltrlError):
    """The token is valid but does not open this route or this rollout (an attempt's token)."""

    http_status = 403


class NotFoundError(BoltrlError, KeyError):
    """A rollout, attempt or resources version does not exist."""

    http_status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConflictError(BoltrlError):
    """The request contradicts the current state, e.g. a status change the lifecycle table forbids."""

    http_status = 409


class PayloadTooLargeError(BoltrlError):
    """A request body is over the server's limit."""

    http_status = 413


class ServerUnavailableError(BoltrlError, ConnectionError):
    """The boltrl server could not be reached after every retry."""

    http_status = 503


class MissingDependencyError(BoltrlError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: run pip install 'boltrl[{extra}]'")


ERRORS_BY_STATUS: dict[int, type[BoltrlError]] = {
    400: InvalidInputError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidInputError,
}
