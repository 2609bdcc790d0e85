"""The FORGE's one error shape.

Services raise :class:`ApplicationError` (or a subclass) with a message written for the person who
acted; views and the API map it once to a response (see ``core.middleware`` and ``core.api``).
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A refused action: ``message`` is shown to the user, ``extra`` carries details (field errors...)."""

    status_code = 400

    def __init__(self, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class PermissionDenied(ApplicationError):
    """The actor's role does not allow the action."""

    status_code = 403


class NotFound(ApplicationError):
    """The object does not exist, or the actor may not know it exists."""

    status_code = 404


class Conflict(ApplicationError):
    """The action raced another change (stale revision, already approved...)."""

    status_code = 409
