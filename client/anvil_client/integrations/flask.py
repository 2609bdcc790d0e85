"""Flask: the ``Anvil`` extension.

    from anvil_client.integrations.flask import Anvil

    app = Flask(__name__)
    Anvil(app)                      # or: anvil = Anvil(); anvil.init_app(app) in a factory

It starts the module-level client when the application is set up (bounded wait for the FORGE), exposes it
as ``app.extensions["anvil"].client`` and as ``prompt(...)`` in Jinja templates, and mounts the admin page
when ``admin_path`` (or ``app.config["ANVIL_ADMIN_PATH"]``) is set. Options for
:class:`~anvil_client.Config` come from ``app.config["ANVIL"]`` (a dict) and the keyword arguments; the
environment and ``anvil.toml`` supply the rest. Flask itself is never imported here.
"""

from __future__ import annotations

from typing import Any

from anvil_client import Client, configure, default_client


class Anvil:
    """Start the LIVE client with a Flask application."""

    def __init__(
        self, app: Any = None, *, client: Client | None = None, admin_path: str | None = None, **options: Any
    ) -> None:
        self._client = client
        self.admin_path = admin_path
        self.options = options
        if app is not None:
            self.init_app(app)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = default_client()
        return self._client

    def init_app(self, app: Any) -> None:
        options = {**(app.config.get("ANVIL") or {}), **self.options}
        if self._client is None and options:
            self._client = configure(**options)
        client = self.client
        client.start()
        app.extensions["anvil"] = self
        jinja_env = getattr(app, "jinja_env", None)
        if jinja_env is not None:
            jinja_env.globals.setdefault("prompt", client.prompt)
        admin_path = self.admin_path or app.config.get("ANVIL_ADMIN_PATH")
        if admin_path:
            from anvil_client.integrations.admin import AdminPage, mount_wsgi

            app.wsgi_app = mount_wsgi(app.wsgi_app, admin_path, AdminPage(client).wsgi)


__all__ = ["Anvil"]
