"""``anvil prompts pull|push|diff|check``: a prompt set kept in a repository, one file per prompt.

    anvil prompts pull ORG/PROJECT/SET --dir prompts/ [--version N | --environment ENV]
    anvil prompts push ORG/PROJECT/SET --dir prompts/ [--submit] [--dry-run] [--keep-missing]
    anvil prompts diff ORG/PROJECT/SET --dir prompts/
    anvil prompts check ORG/PROJECT/SET --dir prompts/

The files are those of the FORGE's import/export format (``docs/import-export.md``): ``<prompt id>.j2`` (or
``.txt``, ``.md``) with optional YAML front matter, and ``set.yaml``. The client does no YAML: it sends the files'
text to the FORGE, which parses them with the same code as an import, and writes the text the FORGE sends back,
so both sides always agree on the format. It authenticates with a personal API key (``ANVIL_API_KEY``) and finds
the FORGE in ``ANVIL_FORGE_URL`` or ``forge_url`` of ``anvil.toml`` (or ``--forge URL``).

Push makes the set's editing content what the directory holds (prompts whose file is gone are removed, unless
``--keep-missing``) and, with ``--submit``, submits it for review; it never approves or publishes.

Exit statuses, for CI jobs: 0 done, or nothing to change; 1 refused or invalid (a file that does not parse, a
template that does not compile, a failing test case, a stale or locked set, a refused key; one line on stderr says
which); 2 ``diff`` found changes that ``push`` would make (and wrong usage, as for every ``anvil`` command).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from anvil_client._config import find_config_file
from anvil_client._exceptions import AnvilError

OK, FAILED, CHANGES = 0, 1, 2
EXTENSIONS = (".j2", ".txt", ".md")
SET_FILE = "set.yaml"
KEY_VARIABLE = "ANVIL_API_KEY"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class PromptsError(AnvilError):
    """A ``prompts`` command failed; ``code`` is its exit status."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        self.code = code
        super().__init__(message)


# -- the FORGE -------------------------------------------------------------------------------------------------


def _forge_url(args: argparse.Namespace) -> str:
    url = args.forge or os.environ.get("ANVIL_FORGE_URL")
    if not url:
        config = find_config_file(os.environ, args.path)
        if config is not None:
            import tomllib

            try:
                table = tomllib.loads(config.read_text(encoding="utf-8")).get("anvil", {})
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise PromptsError(f"cannot read {config}: {exc}") from exc
            url = table.get("forge_url") if isinstance(table, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PromptsError(
            "no FORGE address: set forge_url in anvil.toml (`anvil connect`), ANVIL_FORGE_URL, or --forge URL"
        )
    return url.rstrip("/")


def _target(value: str) -> tuple[str, str, str]:
    parts = value.split("/")
    if len(parts) != 3 or not all(parts):
        raise PromptsError(f"{value!r} is not ORG/PROJECT/SET (for example acme/support-bot/core)")
    return parts[0], parts[1], parts[2]


def _request(args: argparse.Namespace, method: str, action: str, body: Any = None,
             query: dict[str, str] | None = None) -> dict[str, Any]:
    key = os.environ.get(KEY_VARIABLE, "").strip()
    if not key:
        raise PromptsError(f"set {KEY_VARIABLE} to a personal API key (Your account > API keys in the FORGE)")
    org, project, set_slug = (urllib.parse.quote(part, safe="") for part in _target(args.target))
    url = f"{_forge_url(args)}/api/v1/manage/organisations/{org}/projects/{project}/sets/{set_slug}/{action}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - the URL is http(s), checked
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310 - http(s), checked
            raw = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise PromptsError(f"the FORGE refused ({exc.code}): {_error_text(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise PromptsError(f"cannot reach the FORGE at {_forge_url(args)}: {exc}") from exc
    if len(raw) > MAX_RESPONSE_BYTES:
        raise PromptsError("the FORGE's answer is too large")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise PromptsError(f"the FORGE's answer is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PromptsError("the FORGE's answer is not a JSON object")
    return value


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read(64 * 1024))
    except (ValueError, OSError):
        return str(exc.reason)
    return str(body.get("error", exc.reason)) if isinstance(body, dict) else str(exc.reason)


# -- files -----------------------------------------------------------------------------------------------------


def _is_prompt_file(name: str) -> bool:
    return name == SET_FILE or (name.endswith(EXTENSIONS) and not name.startswith("."))


def read_files(directory: Path) -> dict[str, str]:
    """The prompt files (and ``set.yaml``) at the top of ``directory``, by name. Other files are ignored."""
    if not directory.is_dir():
        raise PromptsError(f"{directory} is not a directory")
    files: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and _is_prompt_file(path.name):
            try:
                files[path.name] = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise PromptsError(f"{path}: not UTF-8 text") from None
    return files


def write_files(directory: Path, files: dict[str, str]) -> tuple[list[str], list[str]]:
    """Make ``directory``'s prompt files exactly ``files``: write the changed ones (atomically, one by one) and
    remove prompt files that are not in ``files``. Other files are left alone. Returns (written, removed)."""
    directory.mkdir(parents=True, exist_ok=True)
    current = read_files(directory)
    written, removed = [], []
    for name, text in sorted(files.items()):
        if "/" in name or "\\" in name or not _is_prompt_file(name):
            raise PromptsError(f"the FORGE sent an unexpected file name {name!r}")
        if current.get(name) != text:
            temporary = directory / f".{name}.anvil-tmp"
            temporary.write_bytes(text.encode("utf-8"))
            os.replace(temporary, directory / name)
            written.append(name)
    for name in sorted(set(current) - set(files)):
        (directory / name).unlink()
        removed.append(name)
    return written, removed


# -- commands --------------------------------------------------------------------------------------------------


def run_pull(args: argparse.Namespace) -> int:
    query = {}
    if args.version is not None:
        query["version"] = str(args.version)
    if args.environment:
        query["environment"] = args.environment
    answer = _request(args, "GET", "files", query=query)
    files = answer.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise PromptsError("the FORGE's answer has no files")
    written, removed = write_files(Path(args.dir), files)
    what = f"version {answer['version']}" if answer.get("version") else f"the editing content ({answer.get('status')})"
    _say(f"Pulled {args.target} {what} into {args.dir}: {len(written)} written, {len(removed)} removed, "
         f"{len(files) - len(written)} unchanged.")
    return OK


def _push_body(args: argparse.Namespace, *, dry_run: bool, submit: bool = False) -> dict[str, Any]:
    files = read_files(Path(args.dir))
    if not any(name != SET_FILE for name in files):
        raise PromptsError(f"{args.dir} holds no prompt files ({', '.join(EXTENSIONS)})")
    return {"files": files, "dry_run": dry_run, "submit": submit, "prune": not args.keep_missing}


def _summary(answer: dict[str, Any]) -> str:
    parts = [f"{len(answer.get(k) or [])} {k}" for k in ("added", "changed", "removed")]
    return ", ".join(parts) + f", {len(answer.get('unchanged') or [])} unchanged"


def run_push(args: argparse.Namespace) -> int:
    answer = _request(args, "POST", "files", _push_body(args, dry_run=args.dry_run, submit=args.submit))
    if args.dry_run:
        _say(f"Dry run, nothing pushed: {_summary(answer)}." + (" Nothing would change." if not answer["changes"]
                                                                 else ""))
        _list_changes(answer)
        return OK
    if not answer.get("changes"):
        _say(f"{args.target} already holds these prompts; nothing changed.")
    else:
        _say(f"Pushed to {args.target}: {_summary(answer)}.")
        _list_changes(answer)
    submitted = answer.get("submitted")
    if submitted:
        failing = submitted.get("failing_tests") or []
        _say(f"Submitted for review as version {submitted['number']}" +
             (f" (failing test cases: {', '.join(failing)})." if failing else "."))
    elif args.submit:
        _say(f"Not submitted: {args.target} is {answer.get('status')}, with nothing new since its newest version.")
    return OK


def _list_changes(answer: dict[str, Any]) -> None:
    for kind, mark in (("added", "+"), ("changed", "~"), ("removed", "-")):
        for key in answer.get(kind) or []:
            _say(f"  {mark} {key}")


def run_diff(args: argparse.Namespace) -> int:
    answer = _request(args, "POST", "files", _push_body(args, dry_run=True))
    if not answer.get("changes"):
        _say(f"No changes: {args.dir} matches {args.target}'s editing content.")
        return OK
    local = read_files(Path(args.dir))
    remote = _request(args, "GET", "files").get("files") or {}
    names = _by_id(local)
    theirs = _by_id(remote)
    for key in [*answer.get("added", []), *answer.get("changed", []), *answer.get("removed", [])]:
        before = remote.get(theirs.get(key, ""), "")
        after = local.get(names.get(key, ""), "")
        sys.stdout.writelines(difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"forge/{theirs.get(key, '/dev/null')}",
            tofile=f"{args.dir.rstrip('/')}/{names.get(key, '/dev/null')}",
        ))
    if answer.get("set_changes"):
        _say(f"set.yaml changes the set's {', '.join(sorted(answer['set_changes']))}.")
    _say(f"Push would change {args.target}: {_summary(answer)}.")
    return CHANGES


def _by_id(files: dict[str, str]) -> dict[str, str]:
    out = {}
    for name in files:
        for extension in EXTENSIONS:
            if name.endswith(extension):
                out[name[: -len(extension)]] = name
    return out


def run_check(args: argparse.Namespace) -> int:
    answer = _request(args, "POST", "check", {"files": read_files(Path(args.dir))})
    for key, samples in sorted((answer.get("results") or {}).items()):
        for sample in samples:
            if not sample.get("ok"):
                reasons = [sample.get("error")] if sample.get("error") else [
                    f"{c.get('kind')} {c.get('detail')}" for c in sample.get("checks", []) if not c.get("ok")]
                _say(f"FAIL {key}: {sample.get('name')}: {'; '.join(str(r) for r in reasons if r)}")
    _say(f"{answer.get('prompts')} prompts render; test cases: {answer.get('passed')} passed, "
         f"{answer.get('failed')} failed.")
    return FAILED if answer.get("failed") else OK


def _say(message: str) -> None:
    print(message, flush=True)


# -- parser ----------------------------------------------------------------------------------------------------


def add_prompts_parser(sub: Any, common: argparse.ArgumentParser, network: argparse.ArgumentParser) -> None:
    """Add ``anvil prompts ...`` to the ``anvil`` command's subparsers."""
    prompts = sub.add_parser(
        "prompts", help="keep a prompt set in a repository: pull, push, diff, check (with ANVIL_API_KEY)",
        epilog="Exit statuses: 0 done or nothing to change; 1 refused or invalid (or a failing test case); "
        "2 diff found changes push would make.",
    )
    actions = prompts.add_subparsers(dest="prompts_action", required=True, metavar="ACTION")
    shared = argparse.ArgumentParser(add_help=False, parents=[common, network])
    shared.add_argument("target", metavar="ORG/PROJECT/SET")
    shared.add_argument("--dir", required=True, metavar="DIR", help="the directory of prompt files")
    shared.add_argument("--forge", metavar="URL", help="the FORGE (default: ANVIL_FORGE_URL or anvil.toml)")

    pull = actions.add_parser("pull", parents=[shared], help="write the set's prompt files into DIR")
    which = pull.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, metavar="N", help="this version (default: the editing content)")
    which.add_argument("--environment", metavar="ENV", help="the version live in this environment")
    pull.set_defaults(handler=run_pull)

    push = actions.add_parser("push", parents=[shared], help="make the set's editing content what DIR holds")
    push.add_argument("--submit", action="store_true", help="then submit it for review (never approves)")
    push.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
    push.add_argument("--keep-missing", action="store_true", help="keep prompts that have no file in DIR")
    push.set_defaults(handler=run_push)

    diff = actions.add_parser("diff", parents=[shared], help="show what push would change (exit 2 if anything)")
    diff.add_argument("--keep-missing", action="store_true", help="as push --keep-missing")
    diff.set_defaults(handler=run_diff)

    check = actions.add_parser("check", parents=[shared], help="render DIR's prompts and run their test cases")
    check.set_defaults(handler=run_check)
