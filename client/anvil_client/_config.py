"""Client configuration: one immutable, keyword-only object, checked when it is made.

``Config.from_env()`` reads, in this order of precedence: the environment (``ANVIL_FORGE_URL``,
``ANVIL_TOKEN``, ``ANVIL_CACHE_DIR``, ``ANVIL_MODE``, ``ANVIL_BOOTSTRAP``, ``ANVIL_STARTUP_WAIT``,
``ANVIL_RENDER_GUARD``), then the
``[anvil]`` table of ``anvil.toml`` (found in the working directory or one of its parents, or named by
``ANVIL_CONFIG``). The token never lives in ``anvil.toml`` (a tracked file): it comes from ``ANVIL_TOKEN`` or
from ``anvil.credentials``, an untracked file beside ``anvil.toml`` holding ``token = "..."`` (TOML) or just
the token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from anvil_client._exceptions import ConfigError

CONFIG_FILE = "anvil.toml"
CREDENTIALS_FILE = "anvil.credentials"
_MODES = ("accepting", "frozen")

# (low, high) bounds: values outside are clamped, so a typo cannot make the client hammer its FORGE.
_BOUNDS: dict[str, tuple[float, float]] = {
    "startup_timeout": (0.0, 60.0),
    "connect_timeout": (0.1, 60.0),
    "heartbeat_interval": (0.1, 600.0),
    "read_timeout": (0.3, 3600.0),
    "poll_interval": (0.2, 86400.0),
    "checkin_interval": (0.2, 86400.0),
    "backoff_initial": (0.05, 60.0),
    "backoff_max": (0.1, 600.0),
    "backoff_reset_after": (0.1, 3600.0),
    "state_check_interval": (0.05, 5.0),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """How a :class:`~anvil_client.Client` finds its prompts.

    forge_url, token: the FORGE to follow and a ``live`` ACCESS_TOKEN (both, or neither for offline use).
    cache_dir: the host's cache directory (bundles and the host state); shared by the host's processes.
    mode: the mode used until the host chooses one (``anvil mode ...`` writes the host state, which wins).
    bootstrap: a bootstrap file shipped with the application (``anvil pull --out FILE``).
    sets: the prompt sets to follow (default: every set released to the token's environment).
    startup_timeout: how long the first use may wait for the FORGE (seconds); never longer.
    startup_wait: False (the default): the first use waits for the FORGE only when there is nothing to serve
    (no verified disk cache, no bootstrap file); with prompts at hand it serves them at once and the sync
    thread brings newer versions moments later. True: wait for the FORGE first in any case (at most
    ``startup_timeout``), for a host that would rather start a little later on the newest prompts.
    heartbeat_interval: the FORGE's heartbeat; read_timeout (default 3 heartbeats) ends a silent stream.
    poll_interval: conditional-GET polling while the stream cannot be used.
    checkin_interval: periodic check-ins. instance_name: how this instance is shown (default: host name).
    sync: False disables the background thread (bundles come from the bootstrap file, disk or ``sync()``).
    render_max_steps, render_max_chars, render_max_seconds: the limits of one render of a template with
    logic (loop iterations and calls; characters created; seconds): past one, ``prompt()`` raises
    ``RenderLimitExceeded``. The defaults are far above real prompts; raise them only for a template that
    needs it (the FORGE's preview keeps the defaults).
    render_guard: True (the default): when a version newly received replaces the one served and one of its
    prompts fails to render for the variables the application passes (missing or invalid variable, template
    error, render limit), that call gets the previous version's text instead of an error, and the check-in
    reports it. False: the error is raised (or the fallback used) as for any other render.
    """

    forge_url: str | None = None
    token: str | None = None
    cache_dir: Path | None = None
    mode: str = "accepting"
    bootstrap: Path | None = None
    sets: tuple[str, ...] | None = None
    startup_timeout: float = 2.0
    startup_wait: bool = False
    connect_timeout: float = 5.0
    heartbeat_interval: float = 15.0
    read_timeout: float | None = None
    poll_interval: float = 30.0
    checkin_interval: float = 60.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    backoff_reset_after: float = 60.0
    state_check_interval: float = 0.5
    instance_name: str | None = None
    sync: bool = True
    render_max_steps: int = 100_000
    render_max_chars: int = 20_000_000
    render_max_seconds: float = 2.0
    render_guard: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.forge_url is not None:
            url = str(self.forge_url).strip().rstrip("/")
            if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
                raise ConfigError(f"forge_url must be an http:// or https:// URL, not {self.forge_url!r}")
            set_(self, "forge_url", url)
        if self.token is not None:
            token = str(self.token).strip()
            if not token or any(c.isspace() for c in token):
                raise ConfigError("token must be one word (the ACCESS_TOKEN the FORGE printed)")
            set_(self, "token", token)
        if self.forge_url and not self.token:
            raise ConfigError(
                "forge_url is set but no token: set ANVIL_TOKEN or run `anvil connect URL --token TOKEN`"
            )
        if self.token and not self.forge_url:
            raise ConfigError("a token is set but no forge_url: set ANVIL_FORGE_URL or forge_url in anvil.toml")
        mode = str(self.mode).strip().lower()
        if mode not in _MODES:
            raise ConfigError(f"mode must be 'accepting' or 'frozen', not {self.mode!r}")
        set_(self, "mode", mode)
        set_(self, "cache_dir", Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir())
        if self.bootstrap is not None:
            set_(self, "bootstrap", Path(self.bootstrap).expanduser())
        if self.sets is not None:
            if isinstance(self.sets, str):
                raise ConfigError("sets must be a list of set slugs, not one string")
            set_(self, "sets", tuple(self.sets))
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if name == "read_timeout" and value is None:
                value = 3 * self.heartbeat_interval
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from exc
            if number != number:  # NaN
                raise ConfigError(f"{name} must be a number of seconds, not NaN")
            set_(self, name, min(max(number, low), high))
        if self.read_timeout < 2 * self.heartbeat_interval:  # type: ignore[operator]
            set_(self, "read_timeout", 2 * self.heartbeat_interval)
        if self.backoff_max < self.backoff_initial:
            set_(self, "backoff_max", self.backoff_initial)
        if self.instance_name is not None:
            set_(self, "instance_name", str(self.instance_name)[:200])
        set_(self, "sync", bool(self.sync))
        if not isinstance(self.startup_wait, bool):
            raise ConfigError(f"startup_wait must be true or false, not {self.startup_wait!r}")
        if not isinstance(self.render_guard, bool):
            raise ConfigError(f"render_guard must be true or false, not {self.render_guard!r}")
        for name in ("render_max_steps", "render_max_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of 1 or more, not {value!r}")
        seconds = self.render_max_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            raise ConfigError(f"render_max_seconds must be a number of seconds above 0, not {seconds!r}")
        set_(self, "render_max_seconds", float(seconds))

    @property
    def connected(self) -> bool:
        """Whether a FORGE is configured."""
        return self.forge_url is not None

    def replace(self, **changes: Any) -> Config:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = sorted(set(changes) - set(values))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r}")
        values.update(changes)
        return Config(**values)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, start: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> Config:
        """The configuration from the environment and ``anvil.toml``; ``overrides`` win over both."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_file = find_config_file(env, start)
        if config_file is not None:
            values.update(_read_toml(config_file))
            credentials = config_file.with_name(CREDENTIALS_FILE)
            if credentials.exists():
                values["token"] = read_credentials(credentials)
        for key, name in (
            ("ANVIL_FORGE_URL", "forge_url"),
            ("ANVIL_TOKEN", "token"),
            ("ANVIL_CACHE_DIR", "cache_dir"),
            ("ANVIL_MODE", "mode"),
            ("ANVIL_BOOTSTRAP", "bootstrap"),
        ):
            if env.get(key):
                values[name] = env[key]
        if env.get("ANVIL_STARTUP_WAIT"):
            values["startup_wait"] = _boolean("ANVIL_STARTUP_WAIT", env["ANVIL_STARTUP_WAIT"])
        if env.get("ANVIL_RENDER_GUARD"):
            values["render_guard"] = _boolean("ANVIL_RENDER_GUARD", env["ANVIL_RENDER_GUARD"])
        if env.get("ANVIL_CACHE_DIR"):
            values["cache_dir"] = Path(env["ANVIL_CACHE_DIR"])
        values.update(overrides)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r}")
        return cls(**values)


def _boolean(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {text!r}")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "anvil"


def find_config_file(environ: Mapping[str, str], start: str | os.PathLike[str] | None = None) -> Path | None:
    """``ANVIL_CONFIG`` if set, else the nearest ``anvil.toml`` from ``start`` (the working directory) upwards."""
    if environ.get("ANVIL_CONFIG"):
        path = Path(environ["ANVIL_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"ANVIL_CONFIG names {path}, which is not a file")
        return path
    directory = Path(start or os.getcwd()).resolve()
    for candidate in (directory, *directory.parents):
        path = candidate / CONFIG_FILE
        if path.is_file():
            return path
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    table = data.get("anvil", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [anvil] must be a table")
    if "token" in table:
        raise ConfigError(
            f"{path} holds a token: tokens must not be in a tracked file; move it to "
            f"{path.with_name(CREDENTIALS_FILE)} (untracked) or the ANVIL_TOKEN environment variable"
        )
    known = {f.name for f in fields(Config)} - {"token"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option {unknown[0]!r} in [anvil]")
    values = dict(table)
    for name in ("cache_dir", "bootstrap"):
        if isinstance(values.get(name), str):
            values[name] = (path.parent / Path(values[name]).expanduser()).resolve()
    values.setdefault("cache_dir", path.parent / ".anvil")
    if isinstance(values.get("sets"), list):
        values["sets"] = tuple(values["sets"])
    return values


def read_credentials(path: Path) -> str:
    """The token in ``anvil.credentials``: ``token = "..."`` (TOML, optionally under [anvil]) or the bare token."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None
    if isinstance(data, dict):
        token = data.get("token", data.get("anvil", {}).get("token") if isinstance(data.get("anvil"), dict) else None)
        if isinstance(token, str):
            return token
    if text and "\n" not in text and "=" not in text:
        return text
    raise ConfigError(f"{path} does not hold a token (expected token = \"...\")")
