"""The admin page a host application mounts (WSGI or ASGI): status, mode toggle, pins, manual sync.

    from anvil_client.integrations.admin import admin_wsgi_app, mount_wsgi
    application = mount_wsgi(application, "/anvil", admin_wsgi_app())      # any WSGI application

    from anvil_client.integrations.admin import admin_asgi_app
    app.mount("/anvil", admin_asgi_app())                                    # Starlette / FastAPI

It serves nothing until ``ANVIL_ADMIN_SECRET`` (16 characters or more) is set. See
:mod:`anvil_client._admin` for how sign-in, sessions and CSRF work.
"""

from __future__ import annotations

from anvil_client._admin import AdminPage, admin_asgi_app, admin_wsgi_app, mount_asgi, mount_wsgi

__all__ = ["AdminPage", "admin_asgi_app", "admin_wsgi_app", "mount_asgi", "mount_wsgi"]
