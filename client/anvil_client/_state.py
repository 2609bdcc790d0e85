"""The host's decisions, mode and pins, kept in ``<cache_dir>/state.json``.

Every process of the host that uses the same cache directory reads the same file: the sync thread of each
process looks at its modification time a few times a second, so ``anvil mode frozen`` or ``anvil pin core 3``
reaches every worker within a second and survives restarts. ``anvil sync`` also bumps ``sync_request`` there:
each running process whose sync thread sees a new value syncs at once, as ``Client.sync()`` would. The file
also keeps the instance id the FORGE knows this application on this host by (:func:`host_instance_id`). Writes are
atomic (temp file, fsync, rename, fsync of the directory) and serialised between processes with an advisory
lock on ``state.lock``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anvil_client._exceptions import ConfigError

STATE_FORMAT = "anvil.state/1"
STATE_FILE = "state.json"
MODES = ("accepting", "frozen")
_UNSET: Any = object()
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # as the FORGE's check-in accepts it


@dataclass(frozen=True, slots=True)
class HostState:
    """Mode and pins as the host decided them. ``mode`` is None when nobody chose one yet.

    ``sync_request`` counts the host-wide sync requests (``anvil sync``, the admin page's Sync now); a running
    process syncs when it sees the count change from the one it saw at start.
    """

    mode: str | None = None
    pins: Mapping[str, int] = field(default_factory=dict)
    sync_request: int = 0
    instance_id: str | None = None
    instance_host: str | None = None
    connections: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": STATE_FORMAT, "mode": self.mode, "pins": dict(sorted(self.pins.items()))}
        if self.sync_request:
            data["sync_request"] = self.sync_request
        if self.instance_id:
            data["instance"] = {"id": self.instance_id, "host": self.instance_host}
        if self.connections:
            data["connections"] = {
                key: {"organisation": o, "project": p, "environment": e}
                for key, (o, p, e) in sorted(self.connections.items())
            }
        return data


def state_path(cache_dir: str | os.PathLike[str]) -> Path:
    return Path(cache_dir) / STATE_FILE


def read_host_state(cache_dir: str | os.PathLike[str]) -> HostState:
    """The host state in ``cache_dir``; an empty state when there is none (or it cannot be read)."""
    return _parse(state_path(cache_dir))


def write_host_state(
    cache_dir: str | os.PathLike[str],
    *,
    mode: str | None = _UNSET,
    pins: Mapping[str, int] | None = _UNSET,
    pin: tuple[str, int] | None = None,
    unpin: str | None = None,
    request_sync: bool = False,
) -> HostState:
    """Change the host state atomically and return the new state.

    ``mode`` ("accepting" or "frozen") and ``pins`` (the whole mapping) replace what is there; ``pin=(set,
    version)`` and ``unpin=set`` change one set. ``request_sync=True`` asks every running process of the host
    to sync now (it bumps ``sync_request``). Arguments not given keep their current value. Raises
    :class:`ConfigError` for a bad mode, set or version, or when the directory cannot be written.
    """
    if mode is not _UNSET and mode is not None:
        mode = validate_mode(mode)
    new_pins = None if pins is _UNSET or pins is None else {s: validate_pin(s, v) for s, v in pins.items()}
    if pin is not None:
        validate_pin(*pin)
    directory = Path(cache_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            current = _parse(state_path(directory))
            merged = dict(current.pins) if new_pins is None else new_pins
            if pin is not None:
                merged[pin[0]] = pin[1]
            if unpin is not None:
                merged.pop(unpin, None)
            state = dataclasses.replace(
                current,
                mode=current.mode if mode is _UNSET else mode,
                pins=merged,
                sync_request=current.sync_request + 1 if request_sync else current.sync_request,
            )
            atomic_write(state_path(directory), json.dumps(state.as_dict(), indent=2).encode() + b"\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the host state in {directory}: {exc}") from exc
    return state


def host_instance_id(cache_dir: str | os.PathLike[str], host: str) -> str:
    """The id this application on this host has at its FORGE: the same for all its processes, kept across restarts.

    Made once and kept in the host state; made again when the state names another host (a cache directory
    copied to another machine or baked into an image). When the directory cannot be written, a digest of the
    host name and the directory's path stands in (stable too, but not unique across copies).
    """
    directory = Path(cache_dir)
    state = _parse(state_path(directory))
    if state.instance_id and state.instance_host == host:
        return state.instance_id
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            current = _parse(state_path(directory))  # another process may have made it meanwhile
            if current.instance_id and current.instance_host == host:
                return current.instance_id
            state = dataclasses.replace(current, instance_id=os.urandom(16).hex(), instance_host=host)
            atomic_write(state_path(directory), json.dumps(state.as_dict(), indent=2).encode() + b"\n")
            return state.instance_id  # type: ignore[return-value]
    except OSError:
        import hashlib

        return hashlib.sha256(f"{host}\0{directory.resolve()}".encode()).hexdigest()[:32]


def connection_key(forge_url: str, token: str) -> str:
    """Names a FORGE and token in the host state without keeping the token (a digest of both)."""
    import hashlib

    return hashlib.sha256(f"{forge_url}\0{token}".encode()).hexdigest()[:24]


def record_connection(cache_dir: str | os.PathLike[str], key: str, identity: tuple[str, str, str]) -> None:
    """Remember which organisation, project and environment the FORGE said this token serves.

    At the next start, the disk cache is trusted (served at once) only for that identity. Best effort: a
    directory that cannot be written costs only that next start's wait.
    """
    directory = Path(cache_dir)
    if _parse(state_path(directory)).connections.get(key) == identity:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            current = _parse(state_path(directory))
            connections = dict(current.connections)
            connections[key] = identity
            while len(connections) > 20:  # at most 20; one forgotten costs only a wait at the next start
                connections.pop(next(iter(connections)))
            state = dataclasses.replace(current, connections=connections)
            atomic_write(state_path(directory), json.dumps(state.as_dict(), indent=2).encode() + b"\n")
    except OSError:
        pass


def validate_mode(mode: str) -> str:
    value = str(mode).strip().lower()
    if value not in MODES:
        raise ConfigError(f"mode must be 'accepting' or 'frozen', not {mode!r}")
    return value


def validate_pin(set_slug: str, version: object) -> int:
    from anvil_client.bundle import SLUG_PATTERN

    if not isinstance(set_slug, str) or not SLUG_PATTERN.match(set_slug):
        raise ConfigError(f"{set_slug!r} is not a prompt set slug")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"the version to pin {set_slug!r} to must be a whole number of 1 or more, not {version!r}")
    return version


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old content or the new one, never a part.

    Temp file in the same directory, fsync, rename over the target, fsync of the directory.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still prevents torn files
        yield
        return
    with open(directory / "state.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _parse(path: Path) -> HostState:
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        return HostState()
    except (OSError, ValueError):
        import logging

        logging.getLogger("anvil_client").warning("ignoring unreadable host state file %s", path)
        return HostState()
    if not isinstance(raw, dict):
        return HostState()
    mode = raw.get("mode")
    mode = mode if mode in MODES else None
    pins: dict[str, int] = {}
    raw_pins = raw.get("pins")
    if isinstance(raw_pins, dict):
        for set_slug, version in raw_pins.items():
            try:
                pins[set_slug] = validate_pin(set_slug, version)
            except ConfigError:
                continue
    sync_request = raw.get("sync_request")
    if isinstance(sync_request, bool) or not isinstance(sync_request, int) or sync_request < 0:
        sync_request = 0
    instance = raw.get("instance")
    instance_id = instance_host = None
    if isinstance(instance, dict) and isinstance(instance.get("id"), str) and _INSTANCE_ID.match(instance["id"]):
        instance_id = instance["id"]
        instance_host = instance.get("host") if isinstance(instance.get("host"), str) else None
    connections: dict[str, tuple[str, str, str]] = {}
    raw_connections = raw.get("connections")
    if isinstance(raw_connections, dict):
        for key, value in raw_connections.items():
            if isinstance(value, dict):
                identity = (value.get("organisation"), value.get("project"), value.get("environment"))
                if all(isinstance(part, str) for part in identity):
                    connections[key] = identity  # type: ignore[assignment]
    return HostState(
        mode=mode,
        pins=pins,
        sync_request=sync_request,
        instance_id=instance_id,
        instance_host=instance_host,
        connections=connections,
    )
