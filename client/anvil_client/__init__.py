"""anvil_client: prompts from memory, updated by push from an Anvil FORGE.

    import anvil_client
    anvil_client.prompt("welcome.message", name="Ada")

The module-level functions use a default :class:`Client` configured from the environment and ``anvil.toml``
(:meth:`Config.from_env`), made on first use, never at import. ``configure(...)`` replaces it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from anvil_client._exceptions import (
    AmbiguousPrompt,
    AnvilError,
    BundleDigestError,
    BundleError,
    BundleFormatError,
    BundleSchemaError,
    ConfigError,
    InvalidVariable,
    MissingVariables,
    NotReady,
    PromptNotFound,
    RenderError,
    RenderLimitExceeded,
    SyncError,
    TemplateError,
)
from anvil_client._trace import last as _last
from anvil_client._trace import remember as _remember
from anvil_client._version import __version__

if TYPE_CHECKING:
    from anvil_client._cache import read_bootstrap, write_bootstrap
    from anvil_client._client import Client
    from anvil_client._config import Config
    from anvil_client._state import HostState, read_host_state, write_host_state


# Heavier modules (dataclasses, logging, Jinja2...) load on first use, so importing anvil_client stays cheap.
_LAZY = {
    "Client": "anvil_client._client",
    "Config": "anvil_client._config",
    "HostState": "anvil_client._state",
    "read_host_state": "anvil_client._state",
    "write_host_state": "anvil_client._state",
    "read_bootstrap": "anvil_client._cache",
    "write_bootstrap": "anvil_client._cache",
}
UpdateCallback = Callable[[dict[str, Any]], None]

_default: Client | None = None
_EMPTY_VARIABLES: Mapping[str, Any] = {}
_default_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()  # another thread may have held it when the process forked


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def default_client() -> Client:
    """The module-level client, made from :meth:`Config.from_env` on first call."""
    client = _default
    if client is not None:
        return client
    return _make_default()


def _make_default() -> Client:
    global _default
    with _default_lock:
        if _default is None:
            from anvil_client._client import Client
            from anvil_client._config import Config

            _default = Client(Config.from_env())
        return _default


def configure(config: Config | None = None, /, **options: Any) -> Client:
    """Replace the default client: ``configure(config)`` or ``configure(**options)`` (environment + overrides)."""
    global _default
    from anvil_client._client import Client
    from anvil_client._config import Config

    client = Client(config if config is not None else Config.from_env(**options))
    with _default_lock:
        previous, _default = _default, client
    if previous is not None:
        previous.close()
    return client


def prompt(
    prompt_id: str, variables: Mapping[str, Any] | None = None, /, *, fallback: str | None = None, **kwargs: Any
) -> str:
    """Render a prompt with the default client (see :meth:`Client.prompt`).

    The README's call form, so the hot path's body is here too, on the default client: a call forwarded to
    ``Client.prompt`` costs a frame and two copies of the keywords, a seventh of the call. The two bodies are the
    same statement for statement (``client`` for ``self``): ``tests/test_module.py`` compares their syntax trees.
    """
    client = _default or _make_default()
    try:
        entry = client._prompts[prompt_id]
    except KeyError:  # not started in this process (a fork, a uWSGI master) or an unknown id
        try:
            entry = client._lookup(prompt_id)
        except AnvilError as exc:
            if fallback is None:
                raise
            return client._fallback(prompt_id, exc, fallback)
    if kwargs:
        variables = {**variables, **kwargs} if variables else kwargs
    elif variables is None:
        variables = _EMPTY_VARIABLES
    seen = client._usage_get(prompt_id)
    if seen is None or not seen.issuperset(variables):  # a name new for this id: recorded off the fast path
        client._used(prompt_id, variables)
    next(entry.hits)
    if _last() is not entry:  # a context variable set costs ~70 ns; reading it, a third of that
        _remember(entry)
    current = client._otel_context
    if current is not None:  # an OpenTelemetry tracer provider is set (see _trace.Probe)
        context = current()
        # No context attached, or the one the last look found no recording span in (contexts never change):
        # nothing to do. Else the span is looked at, once per context while none records.
        if context is not client._otel_empty and context is not client._quiet:
            client._span(entry, context)
    try:
        return entry.render(variables)  # type: ignore[no-any-return]
    except AnvilError as exc:
        return client._failed(entry, variables, exc, fallback)


def report(prompt_id: str, ok: bool, kind: str = "") -> None:
    """Count how the text of ``prompt_id`` did once used (default client, see :meth:`Client.report`)."""
    (_default or _make_default()).report(prompt_id, ok, kind)


def template(prompt_id: str) -> str:
    """The raw template of a prompt (default client)."""
    return default_client().template(prompt_id)


def ids() -> list[str]:
    """The prompt ids available (default client)."""
    return default_client().ids()


def get(prompt_id: str) -> dict[str, Any]:
    """A prompt's details (default client, see :meth:`Client.get`)."""
    return default_client().get(prompt_id)


def status() -> dict[str, Any]:
    """The default client's status (see :meth:`Client.status`)."""
    return default_client().status()


def last_prompt() -> dict[str, Any] | None:
    """The prompt the last ``prompt()`` of this thread or asyncio task rendered, any client: ``{"anvil.prompt.id",
    "anvil.prompt.set", "anvil.prompt.version", "anvil.prompt.digest"}`` (the span attributes), or ``None``."""
    from anvil_client._trace import last_prompt as last

    return last()


def on_update(callback: UpdateCallback) -> UpdateCallback:
    """Register a callback for applied updates on the default client; usable as a decorator."""
    return default_client().on_update(callback)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'anvil_client' has no attribute {name!r}")


__all__ = [
    "AmbiguousPrompt",
    "AnvilError",
    "BundleDigestError",
    "BundleError",
    "BundleFormatError",
    "BundleSchemaError",
    "Client",
    "Config",
    "ConfigError",
    "HostState",
    "InvalidVariable",
    "MissingVariables",
    "NotReady",
    "PromptNotFound",
    "RenderError",
    "RenderLimitExceeded",
    "SyncError",
    "TemplateError",
    "__version__",
    "configure",
    "default_client",
    "get",
    "ids",
    "last_prompt",
    "on_update",
    "prompt",
    "read_bootstrap",
    "read_host_state",
    "report",
    "status",
    "template",
    "write_bootstrap",
    "write_host_state",
]
