"""FastAPI (and Starlette): start the LIVE client in the application's lifespan.

    from anvil_client.integrations.fastapi import anvil_lifespan

    app = FastAPI(lifespan=anvil_lifespan)
    app = FastAPI(lifespan=wrap_lifespan(my_lifespan))   # when the application has its own

The client starts in a worker thread (its bounded wait for the FORGE never blocks the event loop), is
available as ``app.state.anvil``, and is closed at shutdown. Neither FastAPI nor Starlette is imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from anvil_client import Client, default_client

Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def anvil_lifespan(app: Any, *, client: Client | None = None) -> AsyncIterator[None]:
    """A lifespan that starts the LIVE client (the module-level one unless ``client`` is given)."""
    client = client if client is not None else default_client()
    await asyncio.to_thread(client.start)
    state = getattr(app, "state", None)
    if state is not None:
        state.anvil = client
    try:
        yield
    finally:
        client.close()


def wrap_lifespan(inner: Lifespan, *, client: Client | None = None) -> Lifespan:
    """The application's own lifespan, run inside :func:`anvil_lifespan`; what ``inner`` yields is passed on."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with anvil_lifespan(app, client=client), inner(app) as state:
            yield state

    return lifespan


__all__ = ["anvil_lifespan", "wrap_lifespan"]
