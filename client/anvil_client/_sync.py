"""The background sync of one client in one process: the ``anvil.sync`` daemon thread.

It follows the FORGE's Server-Sent Events stream (``docs/protocol.md``), reconnecting with exponential
backoff (``backoff_initial`` doubling to ``backoff_max``, with jitter, reset after ``backoff_reset_after``
connected) and ``Last-Event-ID``; treats silence longer than ``read_timeout`` as a dead connection; polls
``/releases`` (bundles with conditional GET) while the stream cannot be used; re-reads the host state file
a few times a second (syncing as ``Client.sync()`` does, even FROZEN, when the host asks for it: ``anvil sync``);
and checks in at start, after applying or declining a release, periodically, and with a goodbye when the
process exits. Every error is logged and kept for ``status()``; none reaches the host application.

The thread knows its client only through :class:`SyncTarget`: the client decides what to take, the thread
fetches, follows and reports.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from anvil_client._config import Config
from anvil_client._exceptions import AnvilError, BundleError
from anvil_client._http import EventStream, HTTPFailure, request
from anvil_client._state import host_instance_id
from anvil_client._version import __version__

logger = logging.getLogger("anvil_client")
API = "/api/v1/live"
INSTANCE_HEADER = "X-Anvil-Instance"
MIN_ASKED_CHECKIN_INTERVAL = 1.0  # the shortest check-in interval a FORGE's answer can ask for


class Forge:
    """The FORGE's LIVE API for one configuration."""

    def __init__(self, config: Config, *, timeout: float | None = None, instance_id: str | None = None) -> None:
        self.config = config
        self.timeout = config.connect_timeout if timeout is None else timeout
        # Sent as ``X-Anvil-Instance`` with every request, so the FORGE can tell this instance what to run.
        self.instance_id = instance_id

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {INSTANCE_HEADER: self.instance_id} if self.instance_id else {}
        return {**headers, **(extra or {})}

    def _get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        url = f"{self.config.forge_url}{path}"
        return request(
            "GET", url, token=self.config.token or "", timeout=self.timeout, headers=self.headers(headers)
        )

    def releases(self) -> dict[str, Any]:
        """The current releases of the token's environment (validated shape)."""
        response = self._get(f"{API}/releases")
        if response.status != 200:
            raise HTTPFailure(f"GET {API}/releases answered {response.status}", status=response.status)
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("releases"), list):
            raise BundleError("the FORGE's releases answer has no list of releases")
        for release in data["releases"]:
            if (
                not isinstance(release, dict)
                or not isinstance(release.get("set"), str)
                or not isinstance(release.get("version"), int)
            ):
                raise BundleError(f"the FORGE sent a malformed release: {release!r:.200}")
        return data

    def bundle(self, set_slug: str, version: int, *, current: Any = None) -> Any:
        """The raw bundle of a set version (a dict), with a conditional GET when ``current`` has the same version."""
        headers = {}
        if current is not None and current.version == version:
            headers["If-None-Match"] = '"' + current.digest.removeprefix("sha256:") + '"'
        response = self._get(f"{API}/bundles/{quote(set_slug)}?version={int(version)}", headers)
        if response.status == 304 and current is not None:
            return dict(current.raw)
        if response.status != 200:
            raise HTTPFailure(
                f"GET bundle {set_slug} version {version} answered {response.status}", status=response.status
            )
        return response.body

    def checkin(self, body: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """POST a check-in; the FORGE's answer (an empty dict when it is not a JSON object)."""
        url = f"{self.config.forge_url}{API}/checkin"
        response = request(
            "POST", url, token=self.config.token or "", timeout=self.timeout if timeout is None else timeout,
            body=body, headers=self.headers(),
        )
        if response.status != 200:
            raise HTTPFailure(f"check-in answered {response.status}: {response.body[:200]!r}", status=response.status)
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}


class SyncTarget(Protocol):
    """What the sync thread needs of its client. Each method takes the client's lock itself."""

    def take_releases(self, forge: Forge, releases: Mapping[str, Any]) -> None:
        """A whole releases list (start-up, polling): take what should be taken; errors are logged per set."""

    def take_release(self, forge: Forge, release: Mapping[str, Any], inline: Any) -> None:
        """One pushed release (with its bundle inline, or None). Raises AnvilError when it was not applied."""

    def host_changes(self) -> tuple[bool, bool]:
        """Re-read the host state: (mode or pins changed, a host-wide sync was asked for and not yet made)."""

    def reconcile(self, forge: Forge) -> bool:
        """Re-decide every known release; True when a fetch failed for a passing reason (worth a retry)."""

    def host_sync(self, timeout: float) -> dict[str, dict[str, Any]]:
        """Sync as ``Client.sync()`` does (even FROZEN). Raises AnvilError."""

    def note_error(self, message: str, *, log: bool) -> None:
        """Keep ``message`` for ``status()`` (and log it at ERROR when ``log``)."""

    def note_connected(self, connected: bool) -> None:
        """The stream opened or closed."""

    def report(self) -> dict[str, Any]:
        """What the client serves, for a check-in: mode (upper case), pins, versions, usage, applied, signals."""

    def checkin_accepted(self, body: Mapping[str, Any]) -> None:
        """The FORGE took this check-in: what it reported as applied, and its signals, are not reported again."""

    def warm(self) -> None:
        """Load now, on the sync thread, what the first pushed release would otherwise load on its way."""


# The sync threads running in this process, told to say goodbye to their FORGE when it exits.
_RUNNING: weakref.WeakSet[SyncThread] = weakref.WeakSet()
_goodbye_registered_pid: int | None = None


class SyncThread:
    """One ``anvil.sync`` daemon thread for a client in this process.

    Its check-ins name the application on this host (:meth:`instance_id`: shared by the application's
    processes, kept across restarts) and this process's id.
    """

    def __init__(self, target: SyncTarget, config: Config) -> None:
        self.target = target
        self.config = config
        self.forge = Forge(config)
        self.first_sync = threading.Event()
        self.process_id = os.getpid()
        self._instance_id: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._checkin_due = True
        self._reconcile_due = False
        self._retry_at: float | None = None  # when to retry releases whose fetch failed
        self._retry_delay = self.config.backoff_initial
        self._last_checkin = 0.0
        self._last_poll = 0.0
        self._last_event_id: str | None = None
        self._stream: EventStream | None = None
        self._failures = 0
        self._legacy_checkin = False
        self._send_signals = True  # False once a FORGE refused the field (older than this client)
        self._asked_interval: float | None = None  # the FORGE's last answer's checkin_interval
        self._warmed = False
        self._thread = threading.Thread(target=self._run, name="anvil.sync", daemon=True)

    # -------------------------------------------------------------------------------------------- control

    def start(self) -> None:
        global _goodbye_registered_pid
        self._thread.start()
        _RUNNING.add(self)
        if _goodbye_registered_pid != os.getpid():  # atexit handlers are inherited by forked children
            _goodbye_registered_pid = os.getpid()
            atexit.register(_say_goodbye)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        self.first_sync.set()
        _RUNNING.discard(self)
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def abandon(self) -> None:
        """In a forked child: forget this (the parent's) thread and close the child's copy of its socket only."""
        _RUNNING.discard(self)
        stream = self._stream
        if stream is not None:
            stream.close_inherited()  # not shutdown(): that would end the parent's stream too

    def goodbye(self, timeout: float = 1.0) -> None:
        """Stop, then tell the FORGE this process is gone (best effort, bounded by ``timeout``)."""
        self.stop(timeout)
        if self.process_id != os.getpid():
            return
        try:
            self.forge.checkin({**self.checkin_body(), "goodbye": True}, timeout=timeout)
        except (AnvilError, OSError) as exc:
            logger.info("anvil: goodbye check-in failed: %s", exc)

    def wake(self) -> None:
        """The host state changed in this process: re-decide every set now."""
        self._reconcile_due = True
        self._wake.set()

    def request_checkin(self) -> None:
        self._checkin_due = True
        self._wake.set()

    def instance_id(self, host: str) -> str:
        """This application's id on this host (read once from the host state, made there the first time)."""
        if self._instance_id is None:
            self._instance_id = host_instance_id(self.config.cache_dir, host)  # type: ignore[arg-type]
        return self._instance_id

    @property
    def checkin_interval(self) -> float:
        """The client's own interval, or the FORGE's when its last answer asked for a shorter one (≥ 1 s)."""
        own = self.config.checkin_interval
        asked = self._asked_interval
        if asked is None or asked >= own:
            return own
        return min(own, max(MIN_ASKED_CHECKIN_INTERVAL, asked))

    @property
    def tick(self) -> float:
        return min(self.config.state_check_interval, 0.5)

    # ------------------------------------------------------------------------------------------- the loop

    def _run(self) -> None:
        try:
            self.forge.instance_id = self.instance_id(_hostname())
        except Exception:  # never into the host: requests go without the header
            logger.exception("anvil: cannot read this instance's id")
        try:
            self._sync_releases(initial=True)
        except Exception:  # never into the host
            logger.exception("anvil: initial sync failed")
        finally:
            self.first_sync.set()
        backoff = self.config.backoff_initial
        while not self._stop.is_set():
            try:
                connected_for, hint = self._stream_once()
            except Exception as exc:  # a bug must not end the thread silently
                logger.exception("anvil: stream loop error")
                self.target.note_error(f"stream loop error: {exc}", log=False)
                connected_for, hint = 0.0, None
            if self._stop.is_set():
                break
            if connected_for >= self.config.backoff_reset_after:
                backoff = self.config.backoff_initial
            if hint is None:
                # Jitter in [backoff/2, backoff]: spreads a crowd of reconnecting instances.
                delay = backoff * (0.5 + random.random() / 2)
            else:
                # The FORGE asked for this delay (Retry-After, retry:): never sooner; jitter only adds.
                delay = max(hint, 0.05) * (1 + random.random() / 2)
            self._idle(delay)
            if hint is None or connected_for < self.config.backoff_reset_after:
                backoff = min(backoff * 2, self.config.backoff_max)

    def _stream_once(self) -> tuple[float, float | None]:
        """Follow the stream until it ends. Returns (seconds connected, server's retry hint or None)."""
        url = f"{self.config.forge_url}{API}/stream"
        try:
            stream = EventStream(
                url, token=self.config.token or "", last_event_id=self._last_event_id,
                connect_timeout=self.config.connect_timeout, headers=self.forge.headers(),
            )
        except (OSError, HTTPFailure) as exc:
            self._failure(f"cannot open the stream: {exc}")
            if isinstance(exc, HTTPFailure) and exc.status == 401:
                return 0.0, self.config.backoff_max
            return 0.0, exc.retry_after if isinstance(exc, HTTPFailure) else None
        if self._stop.is_set():
            stream.close()
            return 0.0, None
        self._stream = stream
        connected_at = time.monotonic()
        self.target.note_connected(True)
        if self._failures:
            logger.info("anvil: stream to %s open again", self.config.forge_url)
        else:
            logger.info("anvil: stream to %s open", self.config.forge_url)
        self._failures = 0
        if not self._warmed:  # once the stream is open, a release can come at any moment: be ready for it
            self._warmed = True
            try:
                self.target.warm()
            except Exception:  # never into the host; the release would load it itself
                logger.exception("anvil: warming the template engine failed")
        hint: float | None = None
        read_timeout = self.config.read_timeout or 3 * self.config.heartbeat_interval
        try:
            while not self._stop.is_set():
                for event in stream.poll(self.tick):
                    self._handle(event)
                self._last_event_id = stream.last_event_id
                if time.monotonic() - stream.last_activity > read_timeout:
                    raise TimeoutError(f"no data from the FORGE for {read_timeout:.1f} s")
                if stream.retry_ms is not None:
                    hint = stream.retry_ms / 1000
                self._housekeeping(connected=True)
        except EOFError:
            self._last_event_id = stream.last_event_id
            hint = stream.retry_ms / 1000 if stream.retry_ms is not None else None
            logger.info("anvil: the FORGE closed the stream; reconnecting")
        except _Revoked:
            hint = self.config.backoff_max
        except (OSError, HTTPFailure, TimeoutError) as exc:
            if not self._stop.is_set():
                self._failure(f"stream lost: {exc}")
            hint = None
        finally:
            self._stream = None
            stream.close()
            self.target.note_connected(False)
        return time.monotonic() - connected_at, hint

    def _idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(min(left, self.tick))
            self._wake.clear()
            self._housekeeping(connected=False)

    def _housekeeping(self, *, connected: bool) -> None:
        try:
            retry = self._retry_at is not None and time.monotonic() >= self._retry_at
            changed, requested = self.target.host_changes()
            if changed or retry or self._reconcile_due:
                self._reconcile_due = False
                transient = self.target.reconcile(self.forge)
                self._checkin_due = True
                self._schedule_retry(transient)
            if requested:
                self._host_sync()
            if not connected and time.monotonic() - self._last_poll >= self.config.poll_interval:
                self._sync_releases(initial=False)
            if self._checkin_due or time.monotonic() - self._last_checkin >= self.checkin_interval:
                self._checkin()
        except Exception:
            logger.exception("anvil: sync housekeeping failed")

    def _host_sync(self) -> None:
        """The host asked every process to sync (``anvil sync``, the admin page): take the releases, even FROZEN."""
        try:
            changes = self.target.host_sync(self.config.connect_timeout)
        except AnvilError as exc:
            self.target.note_error(f"the host's sync request failed: {exc}", log=True)
            return
        logger.info("anvil: synced at the host's request: %s", changes or "already up to date")

    # ----------------------------------------------------------------------------------------- handlers

    def _handle(self, event: Any) -> None:
        if event.event == "release":
            try:
                data = json.loads(event.data)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                self.target.note_error(f"the FORGE sent an unreadable release event: {exc}", log=True)
                return
            try:
                self.target.take_release(self.forge, data, data.get("bundle"))
            except AnvilError as exc:
                what = f"set {data.get('set')!r} version {data.get('version')}"
                self.target.note_error(f"release of {what} not applied: {exc}", log=True)
                self._schedule_retry(isinstance(exc, HTTPFailure))
            self._checkin_due = True
        elif event.event == "revoked":
            message = "the FORGE revoked this instance's token; still serving the last good prompts"
            self.target.note_error(message, log=True)
            raise _Revoked

    def _schedule_retry(self, transient: bool) -> None:
        """After a fetch failed for a passing reason (network, 5xx), try the known releases again later."""
        if not transient:
            self._retry_at = None
            self._retry_delay = self.config.backoff_initial
            return
        self._retry_at = time.monotonic() + self._retry_delay * (0.5 + random.random() / 2)
        self._retry_delay = min(self._retry_delay * 2, self.config.backoff_max)

    def _sync_releases(self, *, initial: bool) -> None:
        """GET the current releases and take what should be taken (start-up and polling fallback)."""
        self._last_poll = time.monotonic()
        try:
            releases = self.forge.releases()
        except (AnvilError, OSError) as exc:
            self._failure(f"cannot get the releases: {exc}")
            return
        self.target.take_releases(self.forge, releases)
        if initial and isinstance(releases.get("last_event_id"), str | int):
            self._last_event_id = str(releases["last_event_id"])
        self._checkin_due = True

    def checkin_body(self) -> dict[str, Any]:
        """What this process reports to the FORGE (``docs/protocol.md``, Check-in)."""
        host = _hostname()
        instance_id = self.instance_id(host)
        return {
            "instance_id": instance_id,
            "process_id": self.process_id,
            "name": _printable(self.config.instance_name or host)[:200] or instance_id,
            "host": host,
            "client_version": __version__,
            "checkin_interval": max(1.0, self.checkin_interval),  # the FORGE takes 1 s or more
            **self.target.report(),
        }

    def _checkin(self) -> None:
        self._checkin_due = False
        self._last_checkin = time.monotonic()
        body = self.checkin_body()
        try:
            if self._legacy_checkin:
                body = _legacy_checkin(body)
            elif not self._send_signals:
                body.pop("signals", None)
            answer = self.forge.checkin(body)
            self.target.checkin_accepted(body)
            self._take_interval(answer.get("checkin_interval"))
        except HTTPFailure as exc:
            if exc.status == 400 and "signals: is not a check-in field" in str(exc) and self._send_signals:
                # A FORGE that knows processes but not signals: keep reporting the rest.
                self._send_signals = False
                self._checkin_due = True
            elif exc.status == 400 and "is not a check-in field" in str(exc) and not self._legacy_checkin:
                # A FORGE older than this client: report as one instance per process, as clients before did.
                self._legacy_checkin = True
                self._checkin_due = True
            logger.info("anvil: check-in failed: %s", exc)
        except (AnvilError, OSError) as exc:
            logger.info("anvil: check-in failed: %s", exc)

    def _take_interval(self, asked: Any) -> None:
        """The FORGE's answer may ask for more frequent check-ins (a rollout does); absent: the client's own."""
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked == asked and asked > 0:
            previous = self.checkin_interval
            self._asked_interval = float(asked)
            if self.checkin_interval != previous:
                logger.info("anvil: checking in every %.1f s (the FORGE's answer)", self.checkin_interval)
        else:
            self._asked_interval = None

    def _failure(self, message: str) -> None:
        self._failures += 1
        self.target.note_error(message, log=False)
        if self._failures == 1:
            logger.warning("anvil: %s (serving the last good prompts; retrying)", message)
        else:
            logger.info("anvil: %s (attempt %d)", message, self._failures)


def _hostname() -> str:
    return _printable(socket.gethostname())[:255]


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())


class _Revoked(Exception):
    pass


def _legacy_checkin(body: dict[str, Any]) -> dict[str, Any]:
    """A check-in an older FORGE accepts: no process fields, one instance id per process."""
    legacy = {
        k: v for k, v in body.items() if k not in ("process_id", "checkin_interval", "goodbye", "applied", "signals")
    }
    legacy["instance_id"] = f"{body['instance_id'][:40]}-{body['process_id']}"
    return legacy


def _say_goodbye() -> None:
    """At exit: every sync thread of this process stops and tells its FORGE, so it drops this process at once."""
    for thread in list(_RUNNING):
        thread.goodbye()
