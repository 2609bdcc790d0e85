"""The LIVE client: an immutable snapshot for the hot path, a background sync thread for the rest."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from anvil_client._config import Config
from anvil_client._exceptions import (
    AmbiguousPrompt,
    AnvilError,
    BundleError,
    NotReady,
    PromptNotFound,
    RenderError,
    SyncError,
)
from anvil_client._http import close_inherited_sockets
from anvil_client._pieces import RenderLimits
from anvil_client._prefork import after_uwsgi_fork, forked_without_python_hooks, threads_cannot_run
from anvil_client._releases import CONFIRM, KEEP, check_bundle, decide, expected_identity, release_version
from anvil_client._signals import Signals
from anvil_client._snapshot import Snapshot
from anvil_client._state import (
    HostState,
    connection_key,
    read_host_state,
    record_connection,
    state_path,
    validate_mode,
    validate_pin,
    write_host_state,
)
from anvil_client._trace import Probe, annotate, annotate_current, last, remember, tracing

logger = logging.getLogger("anvil_client")

_EMPTY_VARIABLES: Mapping[str, Any] = {}
_MAX_USAGE_IDS_KEPT = 10_000  # ids as called (known ids only: an unknown one fails before it is recorded)
_MAX_USAGE_NAMES_KEPT = 1_000  # per id (a caller may pass any mapping keys)
_MAX_USAGE_IDS = 1_000
_MAX_VARIABLES_PER_ID = 50
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
UpdateCallback = Callable[[dict[str, Any]], None]

# Every client of this process, so a forked child can restart their sync threads.
_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()

# At most this many versions per set are reported as applied in one check-in (the FORGE takes 20).
MAX_APPLIED_REPORTED = 20


class Client:
    """Prompts from memory, kept up to date by its FORGE.

    ``Client()`` reads its configuration with :meth:`Config.from_env`; ``Client(config)`` or
    ``Client(forge_url=..., token=..., cache_dir=...)`` configure it explicitly (``options`` build a
    :class:`Config`, or replace fields of the one given). Nothing happens until the first use (or
    :meth:`start`): then the bootstrap file and the disk cache are loaded and the sync thread starts (see
    :meth:`start` for when the first use waits for the FORGE).
    """

    def __init__(self, config: Config | None = None, **options: Any) -> None:
        if config is None:
            config = Config(**options) if options else Config.from_env()
        elif options:
            config = config.replace(**options)
        self.config: Config = config
        # The hot path reads only this dict. It stays empty until the client is started in this process.
        self._prompts: dict[str, Any] = {}
        self._snapshot: Snapshot = Snapshot(limits=RenderLimits(
            max_steps=config.render_max_steps,
            max_chars=config.render_max_chars,
            max_seconds=config.render_max_seconds,
        ))
        # Prompt id (as called) -> the variable names passed with it (all calls together). The hot path reads
        # it without a lock and adds (under ``_usage_lock``) only when a call passes a name not yet in it.
        self._usage: dict[str, frozenset[Any]] = {}
        self._usage_get = self._usage.get
        self._usage_lock = threading.Lock()
        self._callbacks: list[UpdateCallback] = []
        self._warned: set[tuple[str, type]] = set()
        self._signals = Signals()
        self._traced: Probe | None = None  # set when an OpenTelemetry tracer provider is (see _trace, _tracing)
        # What the hot path reads of it: the API's context getter (None: no provider), the context it returns
        # while none is attached, and the context last found without a recording span (see _span).
        self._otel_context: Callable[[], Mapping[Any, Any]] | None = None
        self._otel_empty: Any = None
        self._quiet: Any = None
        # Set -> (the version that replaced the one served before, that one's compiled prompts): the render
        # guard's previous text, kept for the version right before only.
        self._previous: dict[str, tuple[int, Mapping[str, Any]]] = {}
        self._guard_warned: set[tuple[str, str, int]] = set()
        self._lock = threading.RLock()  # start, apply, state changes (never the hot path)
        # Set -> the versions applied from the FORGE since the last accepted check-in (reported as ``applied``).
        self._applied: dict[str, list[int]] = {}
        self._started_pid: int | None = None  # the process whose sync this client runs (and fills _prompts)
        self._loaded_pid: int | None = None  # the process that last loaded the bootstrap file and disk cache
        self._threadless_pid: int | None = None  # a uWSGI master: serving without a thread (see _prefork)
        self._closed = False
        self._host = HostState(mode=None, pins={})
        self._host_mtime: tuple[int, int, int] | None = None
        self._sync_request_seen: int | None = None  # the host's sync request count last acted on (or seen at start)
        self._latest: dict[str, dict[str, Any]] = {}  # newest release seen per set
        self._identity: tuple[str, str, str] | None = None  # organisation, project, environment
        self._last_sync: float | None = None
        self._last_error: str | None = None
        self._connected = False
        self._sync: Any = None
        self._uwsgi_hooked = False
        self._local_trusted = False  # what was loaded locally may be served without waiting for the FORGE
        _CLIENTS.add(self)

    # ----------------------------------------------------------------------------------------------- hot path

    def prompt(
        self,
        prompt_id: str,
        variables: Mapping[str, Any] | None = None,
        /,
        *,
        fallback: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Render prompt ``prompt_id`` with ``variables`` and/or keyword arguments.

        No lock, no I/O, no network: a dictionary read and a render. ``fallback`` is returned (and the
        problem logged) instead of raising an :class:`AnvilError`. ``anvil_client.prompt`` has the same body
        (change both: ``tests/test_module.py`` compares them).
        """
        try:
            entry = self._prompts[prompt_id]
        except KeyError:  # not started in this process (a fork, a uWSGI master) or an unknown id
            try:
                entry = self._lookup(prompt_id)
            except AnvilError as exc:
                if fallback is None:
                    raise
                return self._fallback(prompt_id, exc, fallback)
        if kwargs:
            variables = {**variables, **kwargs} if variables else kwargs
        elif variables is None:
            variables = _EMPTY_VARIABLES
        seen = self._usage_get(prompt_id)
        if seen is None or not seen.issuperset(variables):  # a name new for this id: recorded off the fast path
            self._used(prompt_id, variables)
        next(entry.hits)
        if last() is not entry:  # a context variable set costs ~70 ns; reading it, a third of that
            remember(entry)
        current = self._otel_context
        if current is not None:  # an OpenTelemetry tracer provider is set (see _trace.Probe)
            context = current()
            # No context attached, or the one the last look found no recording span in (contexts never change):
            # nothing to do. Else the span is looked at, once per context while none records.
            if context is not self._otel_empty and context is not self._quiet:
                self._span(entry, context)
        try:
            return entry.render(variables)  # type: ignore[no-any-return]
        except AnvilError as exc:
            return self._failed(entry, variables, exc, fallback)

    def _span(self, entry: Any, context: Mapping[Any, Any]) -> None:
        """Set ``entry`` on the span current in ``context`` if it records, else remember ``context`` as quiet."""
        traced = self._traced
        if traced is None:  # the provider went away meanwhile
            return
        try:
            span = context.get(traced[2])
            if span is not None and span.__class__ is not traced[3] and span.is_recording():
                annotate(entry, span)
            else:  # no span, or one that never records (a span that stopped recording never starts again)
                self._quiet = context
        except Exception:  # noqa: S110 - a span never breaks the host
            pass

    def _tracing(self, probe: Probe | None) -> None:
        """Whether (and how) spans may be recording: set at start, at each snapshot, and by the sync thread."""
        self._traced = probe
        if probe is None:
            self._otel_context = None
        else:
            self._otel_empty = probe[1]
            self._otel_context = probe[0]  # last: a hot path that sees it sees the rest

    def _used(self, prompt_id: str, variables: Mapping[str, Any]) -> None:
        """``prompt_id`` was called with a variable name not recorded for it yet (see ``_usage_report``)."""
        with self._usage_lock:
            seen = self._usage.get(prompt_id)
            if seen is None:
                if len(self._usage) < _MAX_USAGE_IDS_KEPT:
                    self._usage[prompt_id] = frozenset(variables)
            elif len(seen) < _MAX_USAGE_NAMES_KEPT:
                self._usage[prompt_id] = seen.union(variables)

    def _failed(self, entry: Any, variables: Mapping[str, Any], exc: AnvilError, fallback: str | None) -> str:
        """A render of ``entry`` raised: the render guard's previous text, else the fallback, else raise."""
        text = self._guarded(entry, variables, exc) if self.config.render_guard else None
        self._signals.render_failed(
            entry, exc, guarded=text is not None, fallback=text is None and fallback is not None
        )
        if text is not None:
            return text
        if fallback is None:
            raise exc
        return self._fallback(entry.id, exc, fallback)

    def _guarded(self, entry: Any, variables: Mapping[str, Any], exc: AnvilError) -> str | None:
        """The previous version's text of ``entry`` for ``variables`` when ``entry``'s version just replaced it."""
        if not isinstance(exc, RenderError):
            return None
        kept = self._previous.get(entry.set)
        if kept is None or kept[0] != entry.version:
            return None
        previous = kept[1].get(entry.id)
        if previous is None:
            return None
        try:
            text: str = previous.render(variables)
        except AnvilError:
            return None
        remember(previous)  # the text served is the previous version's
        if self._traced is not None:
            annotate_current(previous)
        key = (entry.set, entry.id, entry.version)
        if key not in self._guard_warned:  # once per prompt and version
            self._guard_warned.add(key)
            logger.warning(
                "anvil: prompt %r of set %s version %s failed for the variables passed (%s); the render guard "
                "served version %s's text (reported to the FORGE)",
                entry.id, entry.set, entry.version, exc, previous.version,
            )
        return text

    def report(self, prompt_id: str, ok: bool, kind: str = "") -> None:
        """Tell the FORGE how the text of ``prompt_id`` did once the application used it.

        ``ok=False`` with a short ``kind`` (``"llm_error"``, ``"parse_error"``...) counts a failed outcome for
        the version now served; the counts go with the next check-in. Never raises, never does I/O.
        """
        entry = self._prompts.get(prompt_id) or self._snapshot.prompts.get(prompt_id)
        if entry is not None:
            self._signals.outcome(entry, bool(ok), kind)

    def _fallback(self, prompt_id: str, exc: AnvilError, fallback: str) -> str:
        key = (prompt_id, type(exc))
        if key not in self._warned:  # once per id and error: a hot loop must not flood the logs
            self._warned.add(key)
            logger.warning("anvil: prompt %r failed (%s); the fallback text was used", prompt_id, exc)
        return fallback

    def _lookup(self, prompt_id: str) -> Any:
        entry = self._prompts.get(prompt_id)
        if entry is not None:
            return entry
        if self._started_pid != os.getpid():
            self.start()
        snapshot = self._snapshot
        entry = snapshot.prompts.get(prompt_id)
        if entry is not None:
            return entry
        if not snapshot.sets:
            raise NotReady(self._not_ready_message())
        if prompt_id in snapshot.ambiguous:
            raise AmbiguousPrompt(prompt_id, snapshot.ambiguous[prompt_id])
        bare = [key for key in snapshot.prompts if ":" not in key] + list(snapshot.ambiguous)
        import difflib  # only for a wrong id

        raise PromptNotFound(prompt_id, difflib.get_close_matches(prompt_id, bare, n=3, cutoff=0.6))

    def _not_ready_message(self) -> str:
        cache = f"no bundle in the disk cache ({self.config.cache_dir})"
        if self.config.bootstrap is None:
            local = f"{cache} and no bootstrap file"
            ship = (
                "ship a bootstrap file (`anvil pull --out prompts.json`, then bootstrap = \"prompts.json\" in "
                "anvil.toml, or ANVIL_BOOTSTRAP)"
            )
        else:
            bootstrap = os.path.abspath(self.config.bootstrap)
            problem = "does not exist" if not os.path.exists(bootstrap) else "could not be used (the log says why)"
            local = f"{cache}, and the bootstrap file {bootstrap} {problem}"
            ship = (
                f"put the bootstrap file there (`anvil pull --out {bootstrap}`), or correct `bootstrap` in anvil.toml "
                "(relative to that file) or ANVIL_BOOTSTRAP"
            )
        if self.config.forge_url:
            why = f" ({self._last_error})" if self._last_error else ""
            return (
                f"No prompts yet: the FORGE at {self.config.forge_url} has not answered{why}, {local}. Check the "
                f"FORGE URL and token, or {ship}."
            )
        return (
            f"No prompts: this client is not connected to a FORGE, {local}. Connect it (`anvil connect URL --token "
            f"TOKEN`, or ANVIL_FORGE_URL and ANVIL_TOKEN) or {ship}."
        )

    # ------------------------------------------------------------------------------------------------ reading

    def template(self, prompt_id: str) -> str:
        """The raw template of a prompt."""
        return self._lookup(prompt_id).source  # type: ignore[no-any-return]

    def get(self, prompt_id: str) -> dict[str, Any]:
        """A prompt's id, set, version, template, description, parameters, variables and metadata."""
        return self._lookup(prompt_id).as_dict()  # type: ignore[no-any-return]

    def ids(self) -> list[str]:
        """The prompt ids available (bare when unique, ``set:id`` when an id is in several sets)."""
        self._ensure_started()
        snapshot = self._snapshot
        bare = {key for key in snapshot.prompts if ":" not in key}
        bare.update(f"{s}:{pid}" for pid, sets in snapshot.ambiguous.items() for s in sets)
        return sorted(bare)

    def status(self) -> dict[str, Any]:
        """Mode, source, versions, pins, available versions, last sync, connection and last error."""
        self._ensure_started()
        snapshot = self._snapshot
        available = {
            name: release["version"]
            for name, release in sorted(self._latest.items())
            if name not in snapshot.sets or release["version"] != snapshot.sets[name].bundle.version
        }
        return {
            "mode": self.mode,
            "source": snapshot.source,
            "versions": snapshot.versions,
            "pins": dict(sorted(self._host.pins.items())),
            "available": available,
            "sets": {
                name: {
                    "version": entry.bundle.version,
                    "digest": entry.bundle.digest,
                    "source": entry.source,
                    "prompts": len(entry.prompts),
                }
                for name, entry in sorted(snapshot.sets.items())
            },
            "ambiguous": {pid: list(sets) for pid, sets in sorted(snapshot.ambiguous.items())},
            "last_sync": _iso(self._last_sync),
            "connected": self._connected,
            "last_error": self._last_error,
            "forge_url": self.config.forge_url,
            "cache_dir": str(self.config.cache_dir),
            "started": self._started_pid == os.getpid(),
        }

    @property
    def mode(self) -> str:
        return self._host.mode or self.config.mode

    # -------------------------------------------------------------------------------------------- life cycle

    def start(self) -> Client:
        """Load the bootstrap file and disk cache, start this process's sync thread.

        With prompts at hand (a verified disk cache or the bootstrap file) it returns at once and serves them,
        while the sync thread brings newer versions moments later. With nothing to serve, or when
        ``config.startup_wait`` asks for it, it waits at most ``config.startup_timeout`` for the FORGE. In a
        process that uWSGI may still fork (its master) it starts no thread: each worker starts its own.
        Never raises because the FORGE is slow or away. Idempotent; called by the first use in each process.
        """
        wait_for: threading.Event | None = None
        with self._lock:
            pid = os.getpid()
            if self._started_pid == pid:
                return self
            if self._threadless_pid == pid and forked_without_python_hooks():
                return self
            if self._loaded_pid != pid:
                self._load_in_process(refresh=self._loaded_pid is not None)
                self._loaded_pid = pid
            if forked_without_python_hooks():
                self._start_without_thread()
                return self
            self._started_pid = pid
            if self.config.forge_url and self.config.sync and not self._closed:
                from anvil_client._sync import SyncThread

                why = threads_cannot_run()
                if why is not None:
                    logger.warning("anvil: %s", why)
                self._sync = SyncThread(_SyncLink(self), self.config)
                self._sync.start()
                if self.config.startup_wait or not (self._snapshot.sets and self._local_trusted):
                    wait_for = self._sync.first_sync
            self._prompts = self._snapshot.prompts
            self._tracing(tracing())
        if (
            wait_for is not None
            and self.config.startup_timeout > 0
            and not wait_for.wait(self.config.startup_timeout)
        ):
            logger.warning(
                "anvil: the FORGE at %s did not answer within %.1f s; serving %s",
                self.config.forge_url,
                self.config.startup_timeout,
                self._snapshot.source or "nothing yet",
            )
        return self

    def _load_in_process(self, *, refresh: bool) -> None:
        """Read the host state and the local bundles (caller holds the lock); never raises into the host.

        ``refresh``: in a forked child, whose parent loaded earlier: take what other processes of the host
        have written to the disk cache since, so a new worker never starts older than its siblings.
        """
        try:
            self._refresh_host_state(force=True)
            if refresh:
                self._refresh_from_disk()
            else:
                self._load_local()
        except Exception as exc:  # start-up never raises into the host; it says why instead
            logger.exception("anvil: loading the bootstrap file and disk cache failed")
            self._last_error = f"loading local bundles failed: {exc}"

    def _start_without_thread(self) -> None:
        """In a uWSGI master: no thread, no open socket, no hot-path dict (caller holds the lock).

        The prompts are served from the snapshot by the slow path; a worker forked from here finds the
        hot-path dict empty, notices its new process id and starts its own sync, at once through uWSGI's
        post-fork hook or on its first use. With nothing to serve, the FORGE is asked once, synchronously
        and bounded by ``startup_timeout``, so the workers start with prompts.
        """
        self._threadless_pid = os.getpid()
        self._prompts = {}
        if not self._uwsgi_hooked:
            self._uwsgi_hooked = after_uwsgi_fork(_restart_after_uwsgi_fork(self))
        if self.config.forge_url and self.config.sync and not self._closed and not self._snapshot.sets:
            try:
                self.sync(timeout=max(self.config.startup_timeout, 0.1))
            except AnvilError as exc:
                self._error(f"the FORGE did not answer in uWSGI's master: {exc}; the workers will ask it")
        logger.info(
            "anvil: uWSGI master: serving %s without a sync thread; each worker starts its own",
            self._snapshot.versions or "nothing yet",
        )

    def _ensure_started(self) -> None:
        if self._started_pid != os.getpid():
            self.start()

    def close(self) -> None:
        """Stop the sync thread. The prompts stay readable from memory. Idempotent."""
        with self._lock:
            self._closed = True
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.stop()
        self._connected = False

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        """In a forked child: no sync thread here; the next use restarts one (see ``_at_fork_in_child``)."""
        self._lock = threading.RLock()
        self._usage_lock = threading.Lock()  # a thread of the parent may have held it (the hot path takes it)
        if self._sync is not None:
            self._sync.abandon()
        self._sync = None
        self._connected = False
        self._signals.forget()  # the parent reports what it counted
        if self._loaded_pid is not None and not self._closed:
            self._prompts = {}  # the next prompt() takes the slow path, which restarts sync in this process

    # --------------------------------------------------------------------------------------- host decisions

    def set_mode(self, mode: str) -> None:
        """Set the host's mode ("accepting" or "frozen") for every process using this cache directory."""
        state = write_host_state(self.config.cache_dir, mode=validate_mode(mode))  # type: ignore[arg-type]
        self._host_state_changed(state)

    def pin(self, set_slug: str, version: int) -> None:
        """Pin a set to a version for the host; the version is fetched by the sync thread (or ``sync()``)."""
        validate_pin(set_slug, version)
        state = write_host_state(self.config.cache_dir, pin=(set_slug, version))  # type: ignore[arg-type]
        self._host_state_changed(state)

    def unpin(self, set_slug: str) -> None:
        """Remove a set's pin; in ACCEPTING mode the newest release is taken again."""
        state = write_host_state(self.config.cache_dir, unpin=set_slug)  # type: ignore[arg-type]
        self._host_state_changed(state)

    def _host_state_changed(self, state: HostState) -> None:
        with self._lock:
            self._host = state
            self._host_mtime = None
        sync = self._sync
        if sync is not None:
            sync.wake()
        elif self._started_pid == os.getpid():
            self._apply_pinned_from_local()

    def _refresh_host_state(self, *, force: bool = False) -> bool:
        """Re-read the host state when its file changed. Returns True when mode or pins changed."""
        try:
            stat = state_path(self.config.cache_dir).stat()  # type: ignore[arg-type]
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            stamp = None
        if not force and stamp == self._host_mtime:
            return False
        self._host_mtime = stamp
        state = read_host_state(self.config.cache_dir)  # type: ignore[arg-type]
        if self._sync_request_seen is None:  # a request made before this process started is not for it
            self._sync_request_seen = state.sync_request
        changed = (state.mode, state.pins) != (self._host.mode, self._host.pins)
        if changed and not force:
            logger.info("anvil: host state changed: mode %s, pins %s", state.mode or self.config.mode, state.pins)
        self._host = state
        return changed

    # ------------------------------------------------------------------------------------------- callbacks

    def on_update(self, callback: UpdateCallback) -> UpdateCallback:
        """Call ``callback(change)`` after a bundle is applied; change = {"set", "version", "previous", "source"}.

        Usable as a decorator. Exceptions from callbacks are logged, never raised.
        """
        with self._lock:
            self._callbacks.append(callback)
        return callback

    # --------------------------------------------------------------------------------------------- loading

    def _load_local(self) -> None:
        """Bootstrap file, then disk cache: per set, the pinned version if there, else the newest."""
        from anvil_client._cache import read_bootstrap, read_disk_bundles

        candidates: dict[str, list[tuple[Any, str]]] = {}
        if self.config.bootstrap is not None:
            try:
                for bundle in read_bootstrap(self.config.bootstrap):
                    candidates.setdefault(bundle.set, []).append((bundle, "bootstrap"))
            except BundleError as exc:
                self._error(f"bootstrap file not used: {exc}")
        for bundle in self._disk_bundles(read_disk_bundles):
            candidates.setdefault(bundle.set, []).append((bundle, "disk"))
        snapshot = self._snapshot
        for set_slug, options in sorted(candidates.items()):
            if not self._follows(set_slug):
                continue
            pin = self._host.pins.get(set_slug)
            pinned = [o for o in options if o[0].version == pin]
            bundle, source = (pinned or sorted(options, key=lambda o: (o[0].version, o[1] == "disk")))[-1]
            try:
                snapshot = snapshot.with_set(bundle, source)
            except BundleError as exc:
                self._error(str(exc))
        self._publish(snapshot)
        # Served at once only when known to be this connection's: the bootstrap file ships with the app; the
        # disk cache (perhaps shared with another app, e.g. the default ~/.cache/anvil) once the FORGE has
        # said which project and environment this token serves.
        self._local_trusted = bool(snapshot.sets) and (
            not self.config.forge_url
            or self._connection_identity() is not None
            or all(entry.source == "bootstrap" for entry in snapshot.sets.values())
        )
        if snapshot.sets:
            logger.info("anvil: loaded %s from %s", snapshot.versions, snapshot.source)

    def _connection_identity(self) -> tuple[str, str, str] | None:
        """The organisation, project and environment the FORGE last said this token serves (host state)."""
        if not self.config.forge_url or not self.config.token:
            return None
        return self._host.connections.get(connection_key(self.config.forge_url, self.config.token))

    def _disk_bundles(self, read_disk_bundles: Callable[[Any], list[Any]]) -> list[Any]:
        """The disk cache's bundles, without those of another project or environment when that is known."""
        identity = self._connection_identity()
        bundles = read_disk_bundles(self.config.cache_dir)
        if identity is None:
            return list(bundles)
        return [b for b in bundles if (b.organisation, b.project, b.environment) == identity]

    def _refresh_from_disk(self) -> None:
        """Take newer versions other processes wrote to the disk cache (or the pinned one). Caller holds the lock."""
        from anvil_client._cache import read_disk_bundles

        newest: dict[str, Any] = {}
        for bundle in self._disk_bundles(read_disk_bundles):
            if not self._follows(bundle.set):
                continue
            pin = self._host.pins.get(bundle.set)
            best = newest.get(bundle.set)
            if pin is not None:
                if bundle.version == pin:
                    newest[bundle.set] = bundle
            elif best is None or bundle.version > best.version:
                newest[bundle.set] = bundle
        for set_slug, bundle in sorted(newest.items()):
            current = self._snapshot.sets.get(set_slug)
            pinned = self._host.pins.get(set_slug) == bundle.version
            if current is None or bundle.version > current.bundle.version or (
                pinned and current.bundle.version != bundle.version
            ):
                try:
                    self._apply(bundle, "disk", write=False)
                except AnvilError as exc:
                    self._error(str(exc))

    def _follows(self, set_slug: str) -> bool:
        return self.config.sets is None or set_slug in self.config.sets

    def _publish(self, snapshot: Snapshot) -> None:
        self._signals.track(snapshot.sets)
        self._tracing(tracing())
        self._snapshot = snapshot
        if self._started_pid is not None and self._started_pid == os.getpid():
            self._prompts = snapshot.prompts
        if snapshot.ambiguous:
            self._error(
                "prompt ids in several sets (use set:id): "
                + ", ".join(f"{pid} ({', '.join(sets)})" for pid, sets in sorted(snapshot.ambiguous.items()))
            )

    def _error(self, message: str) -> None:
        self._last_error = message
        logger.error("anvil: %s", message)

    def _apply_pinned_from_local(self) -> None:
        """Without a sync thread, a pin can still be honoured from the disk cache."""
        from anvil_client._cache import read_disk_bundles

        with self._lock:
            for bundle in read_disk_bundles(self.config.cache_dir):  # type: ignore[arg-type]
                if self._host.pins.get(bundle.set) == bundle.version:
                    self._apply(bundle, "disk", write=False)

    def _apply(self, bundle: Any, source: str, *, write: bool = True) -> dict[str, Any] | None:
        """Swap ``bundle`` in (caller holds the lock and decided it should be). Returns the change."""
        current = self._snapshot.sets.get(bundle.set)
        if current is not None and current.bundle.digest == bundle.digest:
            if current.source != source and source == "forge":
                self._publish(self._snapshot.with_source(bundle.set, source))
            return None
        # From the FORGE, changed templates are compiled before the swap: one that fails is refused here.
        snapshot = self._snapshot.with_set(bundle, source, check=source == "forge")
        if current is not None and current.bundle.version != bundle.version:
            self._previous[bundle.set] = (bundle.version, current.prompts)  # for the render guard
        else:
            self._previous.pop(bundle.set, None)
        self._publish(snapshot)
        if source == "forge":
            applied = self._applied.setdefault(bundle.set, [])
            applied.append(bundle.version)
            del applied[:-MAX_APPLIED_REPORTED]
        if write:
            from anvil_client._cache import write_disk_bundle

            write_disk_bundle(self.config.cache_dir, bundle)  # type: ignore[arg-type]
        change = {
            "set": bundle.set,
            "version": bundle.version,
            "previous": current.bundle.version if current is not None else None,
            "source": source,
        }
        logger.info(
            "anvil: applied set %s version %s (was %s) from %s", bundle.set, bundle.version, change["previous"], source
        )
        for callback in list(self._callbacks):
            try:
                callback(dict(change))
            except Exception:
                logger.exception("anvil: an on_update callback failed")
        return change

    # ------------------------------------------------------------------------------------------------ sync

    def sync(self, timeout: float = 10.0, *, host: bool = False) -> dict[str, dict[str, Any]]:
        """Fetch the current releases now and apply them, even in FROZEN mode, respecting pins.

        With ``host=True`` (what ``anvil sync`` and the admin page's Sync now do), once this process synced,
        every other running process using the same cache directory is asked to do the same: each sync thread
        sees the request within ``state_check_interval``. Returns this process's changes per set
        ({"version", "previous"}). Raises :class:`SyncError` when the FORGE cannot be reached or refuses
        (and then asks nothing of the other processes).
        """
        if not self.config.forge_url:
            raise SyncError("this client has no FORGE to sync with (set ANVIL_FORGE_URL and ANVIL_TOKEN)")
        from anvil_client._sync import Forge

        if self._loaded_pid is None:
            with self._lock:
                if self._loaded_pid is None:
                    self._load_in_process(refresh=False)
                    self._loaded_pid = os.getpid()
        sync = self._sync
        forge = Forge(self.config, timeout=timeout, instance_id=sync.forge.instance_id if sync is not None else None)
        try:
            releases = forge.releases()
        except AnvilError as exc:
            raise SyncError(f"sync failed: {exc}") from exc
        changes: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        with self._lock:
            self._refresh_host_state()
            self._record_identity(releases)
            for release in releases["releases"]:
                try:
                    change = self._consider(forge, release, None, manual=True)
                except AnvilError as exc:
                    errors.append(f"set {release.get('set')}: {exc}")
                    continue
                if change is not None:
                    changes[change["set"]] = {"version": change["version"], "previous": change["previous"]}
            self._last_sync = time.time()
        if self._sync is not None:
            self._sync.request_checkin()
        if errors:
            raise SyncError("sync failed: " + "; ".join(errors))
        if host:
            with self._lock:  # this process already synced: its own sync thread must not do it again
                state = write_host_state(self.config.cache_dir, request_sync=True)  # type: ignore[arg-type]
                self._sync_request_seen = state.sync_request
                if self._refresh_host_state() and self._sync is not None:
                    self._sync.wake()  # mode or pins changed meanwhile: the thread re-decides every set
        return changes

    def _take_sync_request(self) -> bool:
        """Whether the host asked for a sync this process has not made yet (marking it made). Caller holds the lock."""
        requested = self._host.sync_request
        if self._sync_request_seen is None or requested == self._sync_request_seen:
            return False
        self._sync_request_seen = requested
        return True

    def _record_identity(self, releases: Mapping[str, Any]) -> None:
        organisation, project, environment = (releases.get(k) for k in ("organisation", "project", "environment"))
        if isinstance(organisation, str) and isinstance(project, str) and isinstance(environment, str):
            identity = (organisation, project, environment)
            self._identity = identity
            if self._connection_identity() != identity and self.config.forge_url and self.config.token:
                key = connection_key(self.config.forge_url, self.config.token)
                record_connection(self.config.cache_dir, key, identity)  # type: ignore[arg-type]
                self._host = dataclasses.replace(self._host, connections={**self._host.connections, key: identity})
        for release in releases.get("releases", []):
            if isinstance(release, dict) and isinstance(release.get("set"), str):
                self._note_release(release)

    def _note_release(self, release: Mapping[str, Any]) -> None:
        release_version(release)  # a release without a version is refused before it is kept
        self._latest[release["set"]] = dict(release)

    def _consider(
        self, forge: Any, release: Mapping[str, Any], inline: Any, *, manual: bool = False
    ) -> dict[str, Any] | None:
        """Decide what to do with a release of a set (:func:`anvil_client._releases.decide`); fetch and apply
        when it should be taken. Caller holds the lock. Raises AnvilError when a fetch or a bundle fails."""
        set_slug = release.get("set")
        if not isinstance(set_slug, str) or not self._follows(set_slug):
            return None
        self._note_release(release)
        entry = self._snapshot.sets.get(set_slug)
        current = entry.bundle if entry is not None else None
        decision = decide(
            release,
            current,
            identity=self._identity,
            pin=self._host.pins.get(set_slug),
            frozen=self.mode == "frozen",
            manual=manual,
        )
        if decision is KEEP:
            return None
        if decision is CONFIRM:
            return self._apply(current, "forge")  # the source becomes the FORGE
        wanted = decision.version
        raw = inline if inline is not None and wanted == release["version"] else forge.bundle(set_slug, wanted)
        from anvil_client.bundle import load_bundle

        bundle = load_bundle(raw)
        check_bundle(bundle, set_slug, wanted, self._expected_identity())  # type: ignore[arg-type]
        return self._apply(bundle, "forge")

    def _expected_identity(self) -> tuple[str, str, str] | None:
        return expected_identity(self._identity, (entry.bundle for entry in self._snapshot.sets.values()))

    def _reconcile(self, forge: Any) -> tuple[list[dict[str, Any]], bool]:
        """Re-decide every known release (after a mode or pin change, or a failed fetch). Caller holds the lock.

        Returns the changes and whether a fetch failed for a passing reason (worth retrying).
        """
        from anvil_client._http import HTTPFailure

        changes = []
        transient = False
        for release in list(self._latest.values()):
            try:
                change = self._consider(forge, release, None)
            except AnvilError as exc:
                self._error(f"set {release.get('set')}: {exc}")
                transient = transient or isinstance(exc, HTTPFailure)
                continue
            if change is not None:
                changes.append(change)
        return changes, transient

    def _usage_report(self) -> dict[str, list[str]]:
        usage = self._usage.copy()  # one C call: safe while the hot path adds
        return {
            # Only names the FORGE accepts (a caller may pass any mapping keys), within its limits.
            pid: sorted(n for n in names if isinstance(n, str) and len(n) <= 100 and _VARIABLE.match(n))[
                :_MAX_VARIABLES_PER_ID
            ]
            for pid, names in sorted(usage.items())[:_MAX_USAGE_IDS]
        }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _at_fork_in_child() -> None:
    for client in list(_CLIENTS):
        with contextlib.suppress(Exception):  # never break a fork
            client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_at_fork_in_child)


class _SyncLink:
    """What a client gives its sync thread (:class:`anvil_client._sync.SyncTarget`): its decisions, not itself."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def take_releases(self, forge: Any, releases: Mapping[str, Any]) -> None:
        client = self._client
        with client._lock:
            client._refresh_host_state()
            client._record_identity(releases)
            for release in releases["releases"]:
                try:
                    client._consider(forge, release, None)
                except AnvilError as exc:
                    client._error(f"set {release.get('set')!r} version {release.get('version')} not applied: {exc}")
            client._last_sync = time.time()

    def take_release(self, forge: Any, release: Mapping[str, Any], inline: Any) -> None:
        client = self._client
        with client._lock:
            client._consider(forge, release, inline)
            client._last_sync = time.time()

    def host_changes(self) -> tuple[bool, bool]:
        client = self._client
        client._tracing(tracing())  # a host may set its tracer provider after the client started
        with client._lock:
            changed = client._refresh_host_state()
            return changed, client._take_sync_request()

    def reconcile(self, forge: Any) -> bool:
        client = self._client
        with client._lock:
            return client._reconcile(forge)[1]

    def host_sync(self, timeout: float) -> dict[str, dict[str, Any]]:
        return self._client.sync(timeout=timeout)

    def note_error(self, message: str, *, log: bool) -> None:
        if log:
            self._client._error(message)
        else:
            self._client._last_error = message

    def note_connected(self, connected: bool) -> None:
        self._client._connected = connected

    def report(self) -> dict[str, Any]:
        client = self._client
        return {
            "mode": client.mode.upper(),
            "pins": dict(client._host.pins),
            "versions": client._snapshot.versions,
            "usage": client._usage_report(),
            **({"applied": applied} if (applied := self._applied_report()) else {}),
            **({"signals": signals} if (signals := client._signals.report()) else {}),
        }

    def _applied_report(self) -> dict[str, list[int]]:
        with self._client._lock:
            return {name: list(numbers) for name, numbers in self._client._applied.items() if numbers}

    def warm(self) -> None:
        """Import the template engine (Jinja2 and the sandbox: 60 to 110 ms, once) when a prompt served needs it.

        A pushed release compiles its changed templates before the swap; without this, the first one after
        start-up paid the import there, between the event and the new text. Substitution-only prompts never
        need Jinja2, so a client serving only those does not load it.
        """
        from anvil_client._render import simple_pieces

        sets = self._client._snapshot.sets.values()  # (``snapshot.prompts`` holds most prompts under two names)
        if any(simple_pieces(p.source) is None for entry in sets for p in entry.prompts.values()):
            from anvil_client import templates

            templates.check_template("{% for item in items %}{{ item | trim }}{% endfor %}")

    def checkin_accepted(self, body: Mapping[str, Any]) -> None:
        """The FORGE took ``body``: the versions it reported as applied, and its signals, are not reported again."""
        if body.get("signals"):
            self._client._signals.accepted(body["signals"])
        with self._client._lock:
            for name, numbers in (body.get("applied") or {}).items():
                left = [n for n in self._client._applied.get(name, []) if n not in numbers]
                if left:
                    self._client._applied[name] = left
                else:
                    self._client._applied.pop(name, None)


def _restart_after_uwsgi_fork(client: Client) -> Callable[[], None]:
    """The post-fork hook of a client loaded in uWSGI's master: start the new worker's sync at once."""
    ref = weakref.ref(client)

    def restart() -> None:
        target = ref()
        if target is None or target._closed:
            return
        close_inherited_sockets()  # uWSGI's C fork runs no Python fork hook
        target._after_fork_in_child()
        target.start()

    return restart
