"""E-mail: off by default; ``EMAIL_URL`` turns it on through Django's own e-mail backends.

    smtp://user:pass@host:port       plain SMTP (port 25 by default)
    smtp+tls://user:pass@host:587    SMTP with STARTTLS
    smtp+ssl://user:pass@host:465    SMTP over TLS from the first byte
    console://                       print messages to the FORGE's standard output (for trying it out)

User and password are percent-decoded (``%40`` for ``@``). ``EMAIL_FROM`` sets the sender (default
``anvil@<host>``). :func:`email_settings` is pure (settings.py calls it); :func:`send` is what services use.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import send_mail

logger = logging.getLogger(__name__)

_SMTP = "django.core.mail.backends.smtp.EmailBackend"
_CONSOLE = "django.core.mail.backends.console.EmailBackend"


def email_settings(url: str, sender: str = "") -> dict[str, Any]:
    """Django's e-mail settings for ``EMAIL_URL``; ``ANVIL_EMAIL_ENABLED`` is False when ``url`` is empty."""
    url = (url or "").strip()
    local = {"EMAIL_BACKEND": _CONSOLE, "DEFAULT_FROM_EMAIL": sender or "anvil@localhost"}
    if not url:
        return {"ANVIL_EMAIL_ENABLED": False, **local}
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "console":
        return {"ANVIL_EMAIL_ENABLED": True, **local}
    if scheme not in ("smtp", "smtp+tls", "smtp+ssl"):
        raise ImproperlyConfigured(
            f"EMAIL_URL has the scheme {scheme!r}: use smtp://, smtp+tls://, smtp+ssl:// or console://."
        )
    if not parts.hostname:
        raise ImproperlyConfigured("EMAIL_URL names no host: write it as smtp://user:password@host:port.")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured("EMAIL_URL has a port that is not a number.") from None
    default_port = {"smtp": 25, "smtp+tls": 587, "smtp+ssl": 465}[scheme]
    return {
        "ANVIL_EMAIL_ENABLED": True,
        "EMAIL_BACKEND": _SMTP,
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port or default_port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": scheme == "smtp+tls",
        "EMAIL_USE_SSL": scheme == "smtp+ssl",
        "EMAIL_TIMEOUT": 10,
        "DEFAULT_FROM_EMAIL": sender or f"anvil@{parts.hostname}",
    }


def email_enabled() -> bool:
    return bool(getattr(settings, "ANVIL_EMAIL_ENABLED", False))


def send(*, to: str, subject: str, body: str) -> bool:
    """Send one plain-text message; ``False`` (logged, never raised) when e-mail is off or sending failed.

    Callers always have another way to hand the link over (the page shows it), so a mail server that is
    down must not undo the action that wanted to tell someone.
    """
    if not email_enabled() or not to:
        return False
    try:
        send_mail(subject, body, None, [to], fail_silently=False)
    except Exception as exc:  # any transport error: report it, do not fail the action
        logger.warning("could not send e-mail %r to %s: %s", subject, to, exc)
        return False
    return True
