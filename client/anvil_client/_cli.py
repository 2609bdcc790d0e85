"""The ``anvil`` command: wire the LIVE client into an application and run its host's decisions.

    anvil install [--path DIR] [--framework NAME] [--yes] [--dry-run]
    anvil connect URL --token TOKEN [--no-save-token]
    anvil status [--json]
    anvil sync
    anvil mode accepting|frozen
    anvil pin SET VERSION
    anvil unpin SET
    anvil pull --out FILE [--from-cache]
    anvil prompts pull|push|diff|check ORG/PROJECT/SET --dir DIR   (see _prompts_cli)

Every command works on the application whose ``anvil.toml`` is found from ``--path`` (default: the working
directory) upwards, or named by ``ANVIL_CONFIG``. Exit statuses: 0 done, 1 failed (the message says why),
2 wrong usage. ``anvil status`` exits 1 when the FORGE refuses the token (the host gets no new prompts until it
is replaced), and 0 when the FORGE cannot be reached (the host serves what it has; the output says so).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anvil_client._config import CONFIG_FILE, CREDENTIALS_FILE, Config, find_config_file
from anvil_client._exceptions import AnvilError, ConfigError

OK, FAILED, USAGE = 0, 1, 2
RELEASES = "/api/v1/live/releases"
PEER_TOKEN_START = "anvil_peer_"
CREATE_LIVE_TOKEN = (
    "Create a live token for the project and environment in the FORGE (Tokens page, or "
    "`anvil-forge token create ORG/PROJECT --environment ENV --kind live --name NAME`)."
)


class CommandError(AnvilError):
    """A command failed; the message is shown as is. ``code`` is the exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        self.code = code
        super().__init__(message)


# -- install -------------------------------------------------------------------------------------------------


def run_install(args: argparse.Namespace) -> int:
    from anvil_client._install import apply_plan, plan_install

    root = Path(args.path)
    plan = plan_install(root, framework=args.framework)
    _say(f"Found {plan.detected.describe()}.")
    for note in plan.notes:
        _say(note)
    if not plan.changes:
        _say("Nothing to change: Anvil is already installed here.")
        _next_steps(plan.detected.root)
        return OK
    _say("")
    _say("These changes will be made:")
    for change in plan.changes:
        _say(f"  {change.path.relative_to(plan.detected.root).as_posix()}: {change.reason}")
    _say("")
    sys.stdout.write(plan.diff())
    if args.dry_run:
        _say("\nDry run: nothing was written.")
        return OK
    if not args.yes and not _confirm("Apply these changes?"):
        _say("Nothing was written (answer y, or pass --yes, to apply).")
        return FAILED
    written = apply_plan(plan)
    _say(f"Wrote {', '.join(p.relative_to(plan.detected.root).as_posix() for p in written)}.")
    _next_steps(plan.detected.root)
    return OK


def _next_steps(root: Path) -> None:
    _say("Next: connect the application to its FORGE (the token stays out of version control):")
    _say(f"  anvil connect https://forge.example.com --token anvil_live_... --path {root}")


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


# -- connect -------------------------------------------------------------------------------------------------


def run_connect(args: argparse.Namespace) -> int:
    from anvil_client._http import HTTPFailure, request

    config_path = _config_path_for(Path(args.path))
    token = (args.token or os.environ.get("ANVIL_TOKEN", "")).strip()
    if not token:
        raise CommandError("give the token with --token TOKEN (or in the ANVIL_TOKEN environment variable)", USAGE)
    if token.startswith(PEER_TOKEN_START):
        raise CommandError(_peer_token_message())
    try:
        probe = Config(forge_url=args.url, token=token, cache_dir=Path("."))
    except ConfigError as exc:
        raise CommandError(str(exc), USAGE) from exc
    url = probe.forge_url
    assert url is not None
    try:
        response = request("GET", url + RELEASES, token=token, timeout=args.timeout)
    except HTTPFailure as exc:
        if exc.status == 401:
            raise CommandError(_refused_message(url, token)) from exc
        raise CommandError(f"{exc}. Is the FORGE running, and is {url} its address?") from exc
    if response.status == 404:
        raise CommandError(
            f"{url} answered 404 to {RELEASES}: it is not an Anvil FORGE, or the token belongs to another project"
        )
    if response.status != 200:
        raise CommandError(f"the FORGE at {url} answered {response.status} to {RELEASES}; try again later")
    try:
        releases = response.json()
        where = f"{releases['organisation']}/{releases['project']} ({releases['environment']})"
        sets = ", ".join(f"{r['set']} v{r['version']}" for r in releases["releases"]) or "no release yet"
    except (AnvilError, KeyError, TypeError) as exc:
        raise CommandError(f"{url} does not answer like an Anvil FORGE: {exc}") from exc
    _say(f"Token accepted by {url}: {where}; current releases: {sets}.")

    if args.no_save_token:
        _say("The token was not saved: set ANVIL_TOKEN in the application's environment.")
    else:
        _save_token(config_path, token)  # first: when it refuses, nothing is recorded
    created = not config_path.exists()
    _write_forge_url(config_path, url)
    _say(f"{'Created' if created else 'Updated'} {config_path} (forge_url = {url}).")
    config = Config.from_env(start=config_path.parent, forge_url=url, token=token, sync=False)
    if find_config_file(os.environ, config_path.parent) != config_path:
        _say(f"Note: ANVIL_CONFIG names another file; this application's settings are in {config_path}.")
    identity = (releases["organisation"], releases["project"], releases["environment"])
    _set_aside_foreign_bundles(config, identity)
    _pull_into_cache(config, args.timeout)
    return OK


def _peer_token_message() -> str:
    return (
        "this is a peer token (anvil_peer_...): it lets another FORGE read this one, not an application. "
        f"The LIVE client needs a live token (anvil_live_...). {CREATE_LIVE_TOKEN}"
    )


def _refused_message(url: str | None, token: str) -> str:
    if token.startswith(PEER_TOKEN_START):
        return f"the FORGE at {url} refused the token (401): {_peer_token_message()}"
    return f"the FORGE at {url} refused the token (401): it is wrong, expired or revoked. {CREATE_LIVE_TOKEN}"


def _config_path_for(path: Path) -> Path:
    """The anvil.toml the application uses: an existing one at or above ``path``, else a new one in ``path``."""
    if not path.is_dir():
        raise CommandError(f"{path} is not a directory", USAGE)
    existing = find_config_file({}, path)
    return existing if existing is not None else path.resolve() / CONFIG_FILE


def _write_forge_url(path: Path, url: str) -> None:
    """Set ``forge_url`` in the [anvil] table, keeping the rest of the file (and its comments) as it is."""
    import tomllib

    from anvil_client._install import ANVIL_TOML
    from anvil_client._state import atomic_write

    text = path.read_text(encoding="utf-8") if path.exists() else ANVIL_TOML
    line = f"forge_url = {json.dumps(url)}\n"
    lines = text.splitlines(keepends=True)
    table, header, active, commented = None, None, None, None
    for index, current in enumerate(lines):
        stripped = current.strip()
        if stripped.startswith("["):
            table = stripped.split("#", 1)[0].strip()
            header = index if table == "[anvil]" else header
        elif table == "[anvil]" and re.match(r"forge_url\s*=", stripped) and active is None:
            active = index
        elif table == "[anvil]" and re.match(r"#\s*forge_url\s*=", stripped) and commented is None:
            commented = index
    if active is not None or commented is not None:
        lines[active if active is not None else commented] = line  # type: ignore[index]
    else:
        if header is None:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append("\n[anvil]\n")
            header = len(lines) - 1
        lines.insert(header + 1, line)
    new_text = "".join(lines)
    try:
        tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"{path} is not valid TOML ({exc}); fix it, then run anvil connect again") from exc
    atomic_write(path, new_text.encode("utf-8"))


def _save_token(config_path: Path, token: str) -> None:
    """Write ``anvil.credentials`` beside ``anvil.toml`` (mode 600), only where version control ignores it."""
    from anvil_client._install import _gitignore_change, _write
    from anvil_client._state import atomic_write

    credentials = config_path.with_name(CREDENTIALS_FILE)
    change = _gitignore_change(config_path.parent)
    if change is not None:
        _write(change.path, change.after)
        _say(f"Added {CREDENTIALS_FILE} to {change.path}.")
    problem = _tracked_problem(credentials)
    if problem:
        raise CommandError(
            f"the token was not saved: {problem}. Set ANVIL_TOKEN in the application's environment instead "
            "(or run again with --no-save-token)."
        )
    text = (
        "# The Anvil ACCESS_TOKEN of this application (written by `anvil connect`). A secret:\n"
        "# never commit this file (it is in .gitignore); ANVIL_TOKEN overrides it.\n"
        f"token = {json.dumps(token)}\n"
    )
    old_umask = os.umask(0o077)
    try:
        atomic_write(credentials, text.encode("utf-8"))
    finally:
        os.umask(old_umask)
    os.chmod(credentials, 0o600)
    _say(f"Saved the token in {credentials} (readable by you only; ignored by git).")


def _tracked_problem(path: Path) -> str | None:
    """Why ``path`` must not hold a secret in its git work tree (tracked or not ignored), or None."""
    def git(*arguments: str) -> int | None:
        try:
            return subprocess.run(
                ["git", "-C", str(path.parent), *arguments], capture_output=True, timeout=10, check=False
            ).returncode
        except (OSError, subprocess.SubprocessError):
            return None

    if git("rev-parse", "--is-inside-work-tree") != 0:
        return None  # not a git work tree (or no git): nothing can track it
    if git("ls-files", "--error-unmatch", path.name) == 0:
        return f"{path} is tracked by git"
    if git("check-ignore", "-q", path.name) != 0:
        return f"git does not ignore {path}"
    return None


def _set_aside_foreign_bundles(config: Config, identity: tuple[str, str, str]) -> None:
    """Move away cached bundles of another project or environment (a previous connection), so they are not served.

    Without this, a cached version of the old project could win over the new one's (a client never takes an
    older version over a newer one).
    """
    import time

    from anvil_client._cache import bundles_dir, read_disk_bundles

    cache_dir = Path(str(config.cache_dir))
    for bundle in read_disk_bundles(cache_dir):
        if (bundle.organisation, bundle.project, bundle.environment) == identity:
            continue
        path = bundles_dir(cache_dir) / f"{bundle.set}.json"
        target = path.with_name(f"{path.name}.replaced-{int(time.time())}")
        os.replace(path, target)
        _say(
            f"The cache held set {bundle.set} of {bundle.organisation}/{bundle.project} ({bundle.environment}) "
            f"from an earlier connection: moved aside to {target.name}."
        )


def _pull_into_cache(config: Config, timeout: float) -> None:
    from anvil_client._client import Client

    client = Client(config)
    try:
        changes = client.sync(timeout=timeout)
        versions = client.status()["versions"]
    finally:
        client.close()
    taken = ", ".join(f"{s} v{v}" for s, v in sorted(versions.items())) or "nothing (no release yet)"
    _say(f"Pulled into the cache {config.cache_dir}: {taken}{'' if changes else ' (already up to date)'}.")


# -- status, sync, mode, pins ----------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    """A client of this application's configuration, without a sync thread, with the disk cache loaded."""
    from anvil_client._client import Client

    path = Path(args.path)
    if not path.is_dir():
        raise CommandError(f"{path} is not a directory", USAGE)
    client = Client(Config.from_env(start=path, sync=False))
    client.start()
    return client


def run_status(args: argparse.Namespace) -> int:
    client = _client(args)
    status = client.status()
    forge: dict[str, Any] = {"url": client.config.forge_url}
    if client.config.forge_url:
        from anvil_client._http import HTTPFailure
        from anvil_client._sync import Forge

        try:
            releases = Forge(client.config, timeout=args.timeout).releases()
        except HTTPFailure as exc:
            if exc.status == 401:
                refused = _refused_message(client.config.forge_url, client.config.token or "")
                forge.update(reachable=True, token_accepted=False, error=refused)
            else:
                forge.update(reachable=exc.status is not None, error=str(exc))
        except AnvilError as exc:
            forge.update(reachable=True, error=str(exc))
        else:
            forge.update(
                reachable=True,
                token_accepted=True,
                organisation=releases.get("organisation"),
                project=releases.get("project"),
                environment=releases.get("environment"),
                releases={r["set"]: r["version"] for r in releases["releases"]},
            )
    status["forge"] = forge
    # This command's own client never streams: report the FORGE as reachable now or not, and leave out
    # what only describes a running process (its sync thread). Running instances check in to the FORGE.
    status["connected"] = bool(forge.get("token_accepted"))
    status.pop("started", None)
    code = FAILED if forge.get("token_accepted") is False else OK
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True, default=str))
        return code
    _say(f"Mode:       {status['mode'].upper()}")
    _say(f"Cache:      {status['cache_dir']}")
    if not forge["url"]:
        _say("FORGE:      not connected (run `anvil connect URL --token TOKEN`)")
    elif forge.get("token_accepted"):
        _say(f"FORGE:      {forge['url']} ({forge['organisation']}/{forge['project']}, {forge['environment']})")
    elif forge.get("token_accepted") is False:
        _say(f"FORGE:      {forge['error']}")
    elif forge["reachable"]:
        _say(f"FORGE:      {forge['url']}: answered with an error ({forge['error']})")
    else:
        _say(f"FORGE:      {forge['url']}: unreachable ({forge['error']}); serving what this host has")
    sets = sorted(set(status["versions"]) | set(status["pins"]) | set(forge.get("releases") or {}))
    if not sets:
        _say("Sets:       none yet (no bundle in the cache or the bootstrap file)")
    for name in sets:
        running = status["versions"].get(name)
        parts = [f"v{running}" if running is not None else "not cached"]
        if name in status["pins"]:
            parts.append(f"pinned to v{status['pins'][name]}")
        live = (forge.get("releases") or {}).get(name)
        if live is not None and live != running:
            parts.append(f"FORGE has v{live}")
        source = status["sets"].get(name, {}).get("source")
        if source:
            parts.append(f"from {source}")
        _say(f"Set {name}: {', '.join(parts)}")
    if status.get("last_error"):
        _say(f"Last error: {status['last_error']}")
    return code


def run_sync(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        changes = client.sync(timeout=args.timeout, host=True)
    finally:
        client.close()
    if not changes:
        _say(f"Up to date: {_versions(client.status()['versions'])}.")
    for name, change in sorted(changes.items()):
        previous = f"v{change['previous']}" if change["previous"] is not None else "nothing"
        _say(f"Set {name}: v{change['version']} (was {previous}).")
    frozen = " (FROZEN too)" if client.mode == "frozen" else ""
    _say(f"Every running process using {client.config.cache_dir} syncs the same way within a second{frozen}.")
    return OK


def run_mode(args: argparse.Namespace) -> int:
    client = _client(args)
    client.set_mode(args.mode)
    what = "new releases are applied as they arrive" if args.mode == "accepting" else (
        "new releases are recorded, not applied (`anvil sync` still takes them)"
    )
    _say(f"Mode: {args.mode.upper()}: {what}.")
    _say(f"Every process using {client.config.cache_dir} follows within a second.")
    return OK


def run_pin(args: argparse.Namespace) -> int:
    from anvil_client._state import validate_pin

    client = _client(args)
    try:
        validate_pin(args.set, args.version)
    except ConfigError as exc:
        raise CommandError(str(exc), USAGE) from exc
    fetched = _fetch_version(client, args.set, args.version, args.timeout)
    client.pin(args.set, args.version)
    _say(f"Pinned set {args.set} to version {args.version}{fetched}.")
    _say(f"Every process using {client.config.cache_dir} follows within a second.")
    return OK


def _fetch_version(client: Any, set_slug: str, version: int, timeout: float) -> str:
    """Check the FORGE has the version and keep it in the disk cache (so a restart can serve it offline)."""
    if not client.config.forge_url:
        cached = client.status()["versions"].get(set_slug)
        return "" if cached == version else " (not in the cache: it is used once a FORGE provides it)"
    from anvil_client._cache import write_disk_bundle
    from anvil_client._http import HTTPFailure
    from anvil_client._sync import Forge
    from anvil_client.bundle import load_bundle

    try:
        bundle = load_bundle(Forge(client.config, timeout=timeout).bundle(set_slug, version))
    except HTTPFailure as exc:
        if exc.status == 404:
            raise CommandError(f"the FORGE has no version {version} of set {set_slug!r}; nothing was pinned") from exc
        if exc.status is None:
            return f" (the FORGE is unreachable: {exc}; the version is fetched when it answers)"
        raise CommandError(f"cannot fetch version {version} of set {set_slug!r}: {exc}") from exc
    if bundle.set != set_slug or bundle.version != version:
        raise CommandError(f"the FORGE sent set {bundle.set!r} version {bundle.version} instead; nothing was pinned")
    write_disk_bundle(client.config.cache_dir, bundle)
    return " (fetched and cached)"


def run_unpin(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.set not in client.status()["pins"]:
        _say(f"Set {args.set} was not pinned.")
        return OK
    client.unpin(args.set)
    _say(f"Unpinned set {args.set}: it follows its releases again (in ACCEPTING mode).")
    return OK


def run_pull(args: argparse.Namespace) -> int:
    from anvil_client._cache import write_bootstrap

    client = _client(args)
    if args.from_cache:
        from anvil_client._cache import read_disk_bundles

        bundles = [dict(bundle.raw) for bundle in read_disk_bundles(client.config.cache_dir)]
    else:
        bundles = _current_bundles(client, args.timeout)
    if not bundles:
        raise CommandError("there is no bundle to write: nothing is released (or cached) yet")
    target = write_bootstrap(args.out, bundles)
    summary = ", ".join(f"{b['set']} v{b['version']}" for b in sorted(bundles, key=lambda b: b["set"]))
    _say(f"Wrote {target}: {summary}.")
    _say(_bootstrap_hint(target.resolve(), Path(args.path)))
    return OK


def _bootstrap_hint(target: Path, path: Path) -> str:
    """How the application finds the file: ``bootstrap`` in anvil.toml is relative to anvil.toml's directory."""
    variable = f"ANVIL_BOOTSTRAP={target}"
    config_file = find_config_file(os.environ, path)
    if config_file is None:
        return f"Ship it with the application and set {variable} in its environment."
    relative = Path(os.path.relpath(target, config_file.resolve().parent)).as_posix()
    return (
        f"Ship it with the application and set bootstrap = {json.dumps(relative)} in {config_file} (relative to "
        f"that file), or {variable}."
    )


def _current_bundles(client: Any, timeout: float) -> list[dict[str, Any]]:
    """The bundle of each set's current release, or of its pinned version."""
    if not client.config.forge_url:
        raise CommandError("this application is not connected to a FORGE: run `anvil connect` or use --from-cache")
    from anvil_client._sync import Forge
    from anvil_client.bundle import load_bundle

    forge = Forge(client.config, timeout=timeout)
    pins = client.status()["pins"]
    bundles = []
    for release in forge.releases()["releases"]:
        version = pins.get(release["set"], release["version"])
        bundles.append(dict(load_bundle(forge.bundle(release["set"], version)).raw))
    return bundles


def _versions(versions: dict[str, int]) -> str:
    return ", ".join(f"{name} v{version}" for name, version in sorted(versions.items())) or "no prompt set"


def _say(message: str) -> None:
    print(message, flush=True)


# -- parser ----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from anvil_client._install import FRAMEWORKS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--path", default=".", metavar="DIR", help="the application's directory (default: the working directory)"
    )
    network = argparse.ArgumentParser(add_help=False)
    network.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the FORGE (default 10)")
    parser = argparse.ArgumentParser(
        prog="anvil",
        description="Wire the Anvil LIVE client into an application and manage this host's prompts.",
        epilog="Exit statuses: 0 done, 1 failed (the message says why; `anvil status`: the FORGE refused the "
        "token), 2 wrong usage.",
    )
    from anvil_client import __version__

    parser.add_argument("--version", action="version", version=f"anvil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    install = sub.add_parser(
        "install", parents=[common], help="find the application and add anvil.toml and the start-up hook"
    )
    install.add_argument("--framework", choices=FRAMEWORKS, help="skip detection (default: detect)")
    install.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    install.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    install.set_defaults(handler=run_install)

    connect = sub.add_parser(
        "connect", parents=[common, network], help="check a token, record the FORGE, pull the current prompts"
    )
    connect.add_argument("url", metavar="URL", help="the FORGE's address, e.g. https://forge.example.com")
    connect.add_argument("--token", help="a live ACCESS_TOKEN (default: the ANVIL_TOKEN environment variable)")
    connect.add_argument(
        "--no-save-token", action="store_true", help=f"do not write {CREDENTIALS_FILE}; use ANVIL_TOKEN instead"
    )
    connect.set_defaults(handler=run_connect)

    status = sub.add_parser("status", parents=[common, network], help="mode, pins and versions of this host")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=run_status)

    sync = sub.add_parser(
        "sync",
        parents=[common, network],
        help="take the current releases now, in this host's cache and its running processes (even FROZEN)",
    )
    sync.set_defaults(handler=run_sync)

    mode = sub.add_parser("mode", parents=[common], help="ACCEPTING applies releases; FROZEN keeps what runs")
    mode.add_argument("mode", choices=("accepting", "frozen"))
    mode.set_defaults(handler=run_mode)

    pin = sub.add_parser("pin", parents=[common, network], help="keep a prompt set at one version")
    pin.add_argument("set", metavar="SET")
    pin.add_argument("version", metavar="VERSION", type=int)
    pin.set_defaults(handler=run_pin)

    unpin = sub.add_parser("unpin", parents=[common], help="let a pinned set follow its releases again")
    unpin.add_argument("set", metavar="SET")
    unpin.set_defaults(handler=run_unpin)

    pull = sub.add_parser("pull", parents=[common, network], help="write a bootstrap file to ship with the app")
    pull.add_argument("--out", required=True, metavar="FILE", help="where to write the bootstrap file")
    pull.add_argument("--from-cache", action="store_true", help="use the disk cache instead of the FORGE")
    pull.set_defaults(handler=run_pull)

    from anvil_client._prompts_cli import add_prompts_parser

    add_prompts_parser(sub, common, network)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from anvil_client._console import parse_arguments, quiet_closed_pipes

    with quiet_closed_pipes():
        args = parse_arguments(build_parser(), argv)
        try:
            return int(args.handler(args))
        except CommandError as exc:
            print(f"anvil: error: {exc}", file=sys.stderr)
            return exc.code
        except AnvilError as exc:
            print(f"anvil: error: {exc}", file=sys.stderr)
            return FAILED
        except KeyboardInterrupt:
            print("anvil: interrupted", file=sys.stderr)
            return FAILED


if __name__ == "__main__":
    sys.exit(main())
