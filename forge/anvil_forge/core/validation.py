"""Small input checks shared by the services: slugs and display names, with messages naming the problem."""

from __future__ import annotations

from typing import Any

from anvil_client.bundle import SLUG_PATTERN
from anvil_forge.core.exceptions import ApplicationError

MAX_SLUG_LENGTH = 64
MAX_NAME_LENGTH = 200


def validate_slug(slug: Any, *, what: str) -> str:
    """Refuse anything but a short lowercase slug (the bundle format's own rule)."""
    if not isinstance(slug, str) or len(slug) > MAX_SLUG_LENGTH or not SLUG_PATTERN.match(slug):
        raise ApplicationError(
            f"{slug!r} is not a valid {what} slug: use lowercase letters, digits, - and _ "
            f"(starting with a letter or digit, at most {MAX_SLUG_LENGTH} characters).",
            {"field": "slug"},
        )
    return slug


def validate_name(name: Any, *, what: str) -> str:
    """A display name: non-empty text up to 200 characters, trimmed."""
    if not isinstance(name, str) or not name.strip():
        raise ApplicationError(f"The {what} must not be empty.", {"field": "name"})
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise ApplicationError(f"The {what} is longer than {MAX_NAME_LENGTH} characters.", {"field": "name"})
    return name
