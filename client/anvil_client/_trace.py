"""Which prompt a piece of work used: ``last_prompt()`` and the attributes of the current OpenTelemetry span.

Every ``prompt()`` call remembers its prompt in a context variable (one C call; each thread and asyncio task
sees its own), so a host that logs by hand can call :func:`last_prompt`. When the host traces with OpenTelemetry
(``opentelemetry-api`` installed and a real tracer provider set: never a dependency of this package, never
imported by it), ``prompt()`` also sets ``anvil.prompt.id``, ``anvil.prompt.set``, ``anvil.prompt.version`` and
``anvil.prompt.digest`` (the version's content digest) on the current span when it is recording. Whether a
provider is set is looked at when the client starts or publishes a snapshot, and by the sync thread a few
times a second, not on every call: without a provider the hot path pays one flag test. With one, it reads
the API's context variable (one C call) and stops there when no context is attached (the variable's default
object) or when the context is the one last found without a recording span (contexts are never changed in
place, and a span that does not record never starts to); else ``Client._span`` reads the span from the
context, with a class test for spans that never record (sampled out) before the span's own ``is_recording()``.
"""

from __future__ import annotations

import contextlib
import contextvars
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


# What the client reads when spans may be recording: (a function returning the current OpenTelemetry context,
# the object it returns while no context is attached, the key of the current span in a context, the class of
# spans that never record). ``Client.prompt`` calls probe[0]() and compares; ``Client._span`` then does
#   span = context.get(probe[2])
#   if span is not None and span.__class__ is not probe[3] and span.is_recording(): annotate(entry, span)
Probe = tuple[Callable[[], Mapping[Any, Any]], Any, Any, type]
_CURRENT = object()
_NEVER = object()


def _current_span_public() -> Mapping[Any, Any]:
    """The current span through the public API (when the API's internals are not where :func:`tracing` looks)."""
    return {_CURRENT: sys.modules["opentelemetry.trace"].get_current_span()}


def tracing() -> Probe | None:
    """``None`` unless spans may be recording: OpenTelemetry's API is loaded (by the host) and a real tracer
    provider is set. Then the hot path's probe (see :data:`Probe`): the API's context variable read directly
    (~30 ns when no context is attached); with a context runtime other than the API's default, the public API."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None
        quiet = trace.NonRecordingSpan
    except Exception:  # an API we do not know: leave the spans alone
        return None
    with contextlib.suppress(Exception):  # internals moved: the public API, at its cost
        runtime = sys.modules["opentelemetry.context"]._RUNTIME_CONTEXT
        key = sys.modules["opentelemetry.trace.propagation"]._SPAN_KEY
        current = runtime._current_context.get
        empty = contextvars.Context().run(current)  # the variable's default: what it holds until one is attached
        if isinstance(empty, Mapping) and empty.get(key) is None:  # (contexts are never changed in place)
            return (current, empty, key, quiet)
    return (_current_span_public, _NEVER, _CURRENT, quiet)


def annotate(entry: Any, span: Any) -> None:
    """Set the prompt's attributes on ``span``, the current span, which is recording (never raises into the host)."""
    with contextlib.suppress(Exception):
        span.set_attributes(attributes(entry))


def annotate_current(entry: Any) -> None:
    """Set the prompt's attributes on the current span if it is recording, through the public API (off the hot
    path: the render guard's text; never raises into the host)."""
    with contextlib.suppress(Exception):
        span = sys.modules["opentelemetry.trace"].get_current_span()
        if span.is_recording():
            span.set_attributes(attributes(entry))
