"""Django: start the LIVE client when Django is ready.

``anvil install`` adds ``"anvil_client.integrations.django.AnvilConfig"`` to ``INSTALLED_APPS``; its
``ready()`` starts the module-level client (bounded wait for the FORGE, never an exception because it is
away). Options for :class:`~anvil_client.Config` may be given in ``settings.ANVIL`` (a dict); the
environment and ``anvil.toml`` supply the rest. To start it from your own ``AppConfig.ready()`` instead, call
:func:`start_client`.

Django's development autoreloader runs ``ready()`` in a watcher process too; the client is started only in
the process that serves requests.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.apps import AppConfig

from anvil_client import Client, configure, default_client


def start_client(**options: Any) -> Client:
    """Configure the default client from ``settings.ANVIL`` (plus ``options``) and start it."""
    from django.conf import settings

    configured = dict(getattr(settings, "ANVIL", None) or {})
    configured.update(options)
    client = configure(**configured) if configured else default_client()
    if not _is_autoreload_watcher():
        client.start()
    return client


def _is_autoreload_watcher() -> bool:
    """True in the parent process of ``manage.py runserver`` (it only restarts the child on changes)."""
    return (
        len(sys.argv) > 1
        and sys.argv[1] == "runserver"
        and "--noreload" not in sys.argv
        and os.environ.get("RUN_MAIN") != "true"
    )


class AnvilConfig(AppConfig):  # type: ignore[misc]
    """Listed in ``INSTALLED_APPS``; starts the LIVE client in :meth:`ready`."""

    name = "anvil_client.integrations.django"
    label = "anvil_client"
    verbose_name = "Anvil LIVE client"

    def ready(self) -> None:
        start_client()


__all__ = ["AnvilConfig", "start_client"]
