"""The FORGE's ASGI application: Django for pages and the API, beside small Starlette endpoints.

The LIVE stream is a Starlette endpoint and not a Django view: a Django async view pins one OS thread
per open stream (its sync ``request_started`` receivers), while a Starlette endpoint costs a few KB of
memory per idle connection. Static files are served by Starlette too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anvil_forge.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from anvil_forge.distribution import live_api, stream  # noqa: E402
from anvil_forge.distribution.checkin_api import PATH as CHECKIN_PATH  # noqa: E402
from anvil_forge.distribution.checkin_api import live_checkin  # noqa: E402

django_application = get_asgi_application()


def build_application() -> Starlette:
    from anvil_forge.distribution import page_events  # open pages' own event stream (live acknowledgements)

    routes = [
        Mount(settings.STATIC_URL.rstrip("/"), app=StaticFiles(directory=settings.STATIC_DIR), name="static"),
        Route(stream.PATH, endpoint=stream.live_stream, name="live-stream"),
        Route(page_events.PATH, endpoint=page_events.page_events, name="page-events"),
        # Check-ins are answered at once and written in batches (checkin_api.py, checkin_writer.py).
        Route(CHECKIN_PATH, endpoint=live_checkin, name="live-checkin"),
        # The LIVE API's releases and bundles, from in-memory caches (live_api.py).
        *live_api.routes(django_application),
        Mount("/", app=django_application),
    ]
    return Starlette(routes=routes, lifespan=_lifespan)


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """The broadcaster's lifespan (stream.py), and the scheduler of scheduled releases (distribution/scheduler.py)."""
    from anvil_forge.distribution.scheduler import scheduler

    async with stream.lifespan(app):
        scheduler.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, scheduler.stop)


# Outermost: /metrics, request timing and the webhook drainer (core/metrics.py), around everything else.
from anvil_forge.core.metrics import Instrumented  # noqa: E402

# The stream path is dispatched before Starlette's middleware so it keeps uvicorn's own send (stream.py).
application = Instrumented(stream.StreamFirst(build_application()))
