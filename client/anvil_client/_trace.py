"""Which prompt a piece of work used: ``last_prompt()`` and the attributes of the current OpenTelemetry span.

Every ``prompt()`` call remembers its prompt in a context variable (one C call; each thread and asyncio task
sees its own), so a host that logs by hand can call :func:`last_prompt`. When the host traces with OpenTelemetry
(``opentelemetry-api`` installed and a real tracer provider set: never a dependency of this package, never
imported by it), ``prompt()`` also sets ``anvil.prompt.id``, ``anvil.prompt.set``, ``anvil.prompt.version`` and
``anvil.prompt.digest`` (the version's content digest) on the current span when it is recording. Whether a
provider is set is looked at when the client starts or publishes a snapshot, and by the sync thread a few
times a second, not on every call: the hot path pays one flag test.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

_LAST: ContextVar[Any] = ContextVar("anvil_client.last_prompt", default=None)
remember = _LAST.set
last = _LAST.get


def attributes(entry: Any) -> dict[str, Any]:
    return {
        "anvil.prompt.id": entry.id,
        "anvil.prompt.set": entry.set,
        "anvil.prompt.version": entry.version,
        "anvil.prompt.digest": entry.digest,
    }


def last_prompt() -> dict[str, Any] | None:
    """The prompt the last ``prompt()`` call of this thread or task rendered (its id, set, version and
    digest, under the span attribute names), or ``None`` before the first."""
    entry = _LAST.get()
    return None if entry is None else attributes(entry)


# (a function returning the current OpenTelemetry context, the key of the current span in it)
Probe = tuple[Callable[[], Mapping[Any, Any]], Any]
_ALWAYS = object()


def _always() -> Mapping[Any, Any]:
    return {_ALWAYS: True}


def tracing() -> Probe | None:
    """``None`` unless spans may be recording: OpenTelemetry's API is loaded (by the host) and a real tracer
    provider is set. Then a cheap probe for the hot path: ``probe[0]().get(probe[1]) is not None`` when a span
    is current (the API's context variable read directly, ~50 ns; with a context runtime other than the
    API's default, always true and :func:`annotate` asks the API)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None
    except Exception:  # an API we do not know: leave the spans alone
        return None
    with contextlib.suppress(Exception):  # internals moved: the public API, at its cost
        runtime = sys.modules["opentelemetry.context"]._RUNTIME_CONTEXT
        key = sys.modules["opentelemetry.trace.propagation"]._SPAN_KEY
        current = runtime._current_context.get
        if isinstance(current(), Mapping):
            return (current, key)
    return (_always, _ALWAYS)


def annotate(entry: Any) -> None:
    """Set the prompt's attributes on the current span if it is recording (never raises into the host)."""
    with contextlib.suppress(Exception):
        span = sys.modules["opentelemetry.trace"].get_current_span()
        if span.is_recording():
            span.set_attributes(attributes(entry))
