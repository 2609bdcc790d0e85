"""``anvil install``: find the host application, plan the edits that wire the LIVE client in, apply them.

The plan is computed first and shown as a unified diff; nothing is written until it is applied. Every edit
checks first whether it was already made, so a second run plans nothing. The token is never part of it:
``anvil.toml`` holds no secret, and ``anvil.credentials`` (where ``anvil connect`` keeps the token) is added
to ``.gitignore``.

What is edited, per framework:

* Django: ``"anvil_client.integrations.django.AnvilConfig"`` appended to ``INSTALLED_APPS`` (its
  ``AppConfig.ready()`` starts the client);
* Flask: ``Anvil(app)`` after ``app = Flask(...)`` (the Flask extension);
* FastAPI: ``lifespan=anvil_lifespan`` in ``FastAPI(...)``, or the existing lifespan wrapped in
  ``wrap_lifespan(...)``;
* plain Python: nothing but ``anvil.toml``; the client starts on the first ``anvil_client.prompt()``.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from anvil_client._config import CONFIG_FILE, CREDENTIALS_FILE
from anvil_client._exceptions import AnvilError

FRAMEWORKS = ("django", "flask", "fastapi", "plain")
DJANGO_ENTRY = "anvil_client.integrations.django.AnvilConfig"
CACHE_DIR = ".anvil"
GITIGNORE_ENTRIES = (CREDENTIALS_FILE, f"{CACHE_DIR}/")

_SKIP_DIRS = frozenset(
    {
        "node_modules",
        "__pycache__",
        "site-packages",
        "venv",
        "env",
        "build",
        "dist",
        "htmlcov",
    }
)
_MAX_FILES = 5000
_MAX_DEPTH = 6
_MAX_FILE_BYTES = 1_000_000
_SETTINGS_MODULE = re.compile(r"""DJANGO_SETTINGS_MODULE["']\s*(?:,|\]\s*=)\s*["']([\w.]+)["']""")
_FLASK = re.compile(r"^[ \t]*(\w+)[ \t]*(?::[^=\n]*)?=[ \t]*(?:flask\.)?Flask\(", re.MULTILINE)
_FASTAPI = re.compile(r"^[ \t]*(\w+)[ \t]*(?::[^=\n]*)?=[ \t]*(?:fastapi\.)?FastAPI\(", re.MULTILINE)

ANVIL_TOML = f"""\
# Anvil LIVE client settings, read by anvil_client when the application starts.
# No secret belongs here: the token lives in {CREDENTIALS_FILE} (untracked, written by `anvil connect`)
# or in the ANVIL_TOKEN environment variable. ANVIL_FORGE_URL, ANVIL_CACHE_DIR, ANVIL_MODE and
# ANVIL_BOOTSTRAP override the values below.
[anvil]
# The FORGE to follow: `anvil connect URL --token TOKEN` fills this in.
# forge_url = "https://forge.example.com"

# The last good bundles, the mode and the pins of this host (relative to this file; keep it on a disk
# that survives restarts and is shared by the application's processes).
cache_dir = "{CACHE_DIR}"

# A bootstrap file shipped with the application, used when neither the cache nor the FORGE has a bundle
# (make it with `anvil pull --out anvil-bootstrap.json`).
# bootstrap = "anvil-bootstrap.json"
"""


class InstallError(AnvilError):
    """The application cannot be wired in automatically (the message says what to do instead)."""


@dataclass(frozen=True, slots=True)
class Detected:
    """The application found under ``root``: its framework and the file the start-up hook goes into."""

    framework: str
    root: Path
    target: Path | None = None
    variable: str | None = None
    others: tuple[Path, ...] = ()

    def describe(self) -> str:
        if self.framework == "plain":
            return "a plain Python application (no Django, Flask or FastAPI app found)"
        where = _relative(self.target, self.root) if self.target else "?"
        if self.framework == "django":
            return f"a Django project (settings: {where})"
        name = "Flask" if self.framework == "flask" else "FastAPI"
        return f"a {name} application (`{self.variable}` in {where})"


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file to create (``before`` is None) or rewrite."""

    path: Path
    before: str | None
    after: str
    reason: str

    def diff(self, root: Path) -> str:
        name = _relative(self.path, root)
        lines = difflib.unified_diff(
            (self.before or "").splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            fromfile="/dev/null" if self.before is None else f"a/{name}",
            tofile=f"b/{name}",
        )
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``anvil install`` would do. ``changes`` is empty when everything is already in place."""

    detected: Detected
    changes: tuple[FileChange, ...]
    notes: tuple[str, ...] = field(default=())

    def diff(self) -> str:
        return "".join(change.diff(self.detected.root) for change in self.changes)


def detect(root: Path, framework: str | None = None) -> Detected:
    """Find the application under ``root``: Django (manage.py), then FastAPI, then Flask, else plain.

    ``framework`` forces one; the file to edit is still searched for (and its absence is an error). A directory
    without any Python file is no application (an error, unless ``framework`` is ``"plain"``).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InstallError(f"{root} is not a directory")
    if framework is not None and framework not in FRAMEWORKS:
        raise InstallError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")
    if framework == "plain":
        return Detected("plain", root)
    files = list(_python_files(root))
    if not files and framework is None:
        raise InstallError(
            f"found no Python application in {root} (no .py file outside hidden and virtualenv directories). "
            "Run `anvil install` in the application's directory, or name it: `anvil install --path DIR`. For an "
            "application whose code is elsewhere, `anvil install --framework plain` writes only anvil.toml and "
            ".gitignore."
        )
    if framework in (None, "django"):
        settings = _django_settings(root, files)
        if settings:
            return Detected("django", root, settings[0], others=tuple(settings[1:]))
        if framework == "django":
            raise InstallError(f"no Django settings with INSTALLED_APPS found under {root}")
    for name, pattern in (("fastapi", _FASTAPI), ("flask", _FLASK)):
        if framework not in (None, name):
            continue
        found = [(path, match.group(1)) for path in files for match in [pattern.search(_read(path))] if match]
        if found:
            found.sort(key=lambda item: (len(item[0].relative_to(root).parts), str(item[0])))
            path, variable = found[0]
            return Detected(name, root, path, variable, tuple(p for p, _ in found[1:]))
        if framework == name:
            label = "Flask(...)" if name == "flask" else "FastAPI(...)"
            raise InstallError(f"no `app = {label}` found in the Python files under {root}")
    return Detected("plain", root)


def plan_install(root: Path, *, framework: str | None = None) -> Plan:
    """Every change ``anvil install`` would make under ``root``, without writing anything."""
    detected = detect(root, framework)
    changes: list[FileChange] = []
    notes: list[str] = []
    config = detected.root / CONFIG_FILE
    if not config.exists():
        changes.append(FileChange(config, None, ANVIL_TOML, "the LIVE client's settings (no secrets)"))
    gitignore = _gitignore_change(detected.root)
    if gitignore:
        changes.append(gitignore)
    if detected.framework == "django":
        assert detected.target is not None
        hook = _django_change(detected.target)
    elif detected.framework == "flask":
        assert detected.target is not None and detected.variable is not None
        hook = _flask_change(detected.target, detected.variable)
    elif detected.framework == "fastapi":
        assert detected.target is not None and detected.variable is not None
        hook = _fastapi_change(detected.target, detected.variable)
    else:
        hook = None
        notes.append("No start-up hook is needed: the client starts on the first anvil_client.prompt() call.")
    if hook:
        changes.append(hook)
    if detected.others:
        others = ", ".join(_relative(p, detected.root) for p in detected.others)
        notes.append(f"Also found {others}; only {_relative(detected.target, detected.root)} was changed.")
    return Plan(detected, tuple(changes), tuple(notes))


def apply_plan(plan: Plan) -> list[Path]:
    """Write every change of ``plan``; refuses (before writing anything) if a file changed since it was planned."""
    for change in plan.changes:
        current = _read(change.path) if change.path.exists() else None
        if current != change.before:
            raise InstallError(f"{change.path} changed while the install was being planned; run it again")
    written = []
    for change in plan.changes:
        _write(change.path, change.after)
        written.append(change.path)
    return written


# -- detection -------------------------------------------------------------------------------------------


def _python_files(root: Path) -> Iterator[Path]:
    count = 0
    for directory, subdirs, names in os.walk(root):
        depth = len(Path(directory).relative_to(root).parts)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and d not in _SKIP_DIRS and depth < _MAX_DEPTH and not d.endswith(".egg-info")
        )
        for name in sorted(names):
            if name.endswith(".py"):
                count += 1
                if count > _MAX_FILES:
                    return
                yield Path(directory) / name


def _django_settings(root: Path, files: list[Path]) -> list[Path]:
    """Settings files defining INSTALLED_APPS, the one manage.py names first."""
    found: list[Path] = []
    for manage in (f for f in files if f.name == "manage.py"):
        match = _SETTINGS_MODULE.search(_read(manage))
        if not match:
            continue
        module_path = manage.parent.joinpath(*match.group(1).split("."))
        candidates = [module_path.with_suffix(".py"), module_path / "__init__.py"]
        if module_path.parent.is_dir():  # settings/dev.py importing settings/base.py
            candidates += sorted(module_path.parent.glob("*.py"))
        for candidate in candidates:
            if candidate.is_file() and _defines_installed_apps(candidate) and candidate not in found:
                found.append(candidate)
                break
    if not found and any(f.name == "manage.py" for f in files):
        found = [f for f in files if f.name == "settings.py" and _defines_installed_apps(f)]
    return found


def _defines_installed_apps(path: Path) -> bool:
    return re.search(r"^INSTALLED_APPS\s*[:=+]", _read(path), re.MULTILINE) is not None


# -- edits -----------------------------------------------------------------------------------------------


def _gitignore_change(root: Path) -> FileChange | None:
    path = root / ".gitignore"
    before = _read(path) if path.exists() else None
    present = {line.strip().lstrip("/") for line in (before or "").splitlines()}
    missing = [entry for entry in GITIGNORE_ENTRIES if entry not in present and entry.rstrip("/") not in present]
    if not missing:
        return None
    text = before or ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += "# Anvil: the token (anvil connect) and the local cache of prompts, never committed\n"
    text += "".join(f"{entry}\n" for entry in missing)
    return FileChange(path, before, text, "keep the token and the cache out of version control")


def _django_change(settings: Path) -> FileChange | None:
    source = _read(settings)
    if "anvil_client.integrations.django" in source:
        return None
    tree = _parse(settings, source)
    entry = f'"{DJANGO_ENTRY}"'
    assign = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "INSTALLED_APPS" for t in node.targets)
        ),
        None,
    )
    if assign is not None and isinstance(assign.value, ast.List | ast.Tuple):
        after = _append_to_sequence(source, assign.value.elts, assign.value, entry)
    else:
        text = source if source.endswith("\n") or not source else source + "\n"
        after = text + f"\nINSTALLED_APPS = [*INSTALLED_APPS, {entry}]  # Anvil: starts the LIVE client\n"
    return _checked(settings, source, after, "start the LIVE client in AppConfig.ready()")


def _flask_change(path: Path, variable: str) -> FileChange | None:
    source = _read(path)
    if "anvil_client.integrations" in source:
        return None
    tree = _parse(path, source)
    call = _find_assigned_call(tree, variable, "Flask")
    if call is None:
        raise InstallError(f"cannot find `{variable} = Flask(...)` in {path}; add `Anvil({variable})` by hand")
    statement, _ = call
    lines = source.splitlines(keepends=True)
    indent = _indent(lines[statement.lineno - 1])
    newline = _newline(source)
    lines.insert(statement.end_lineno or statement.lineno, f"{indent}Anvil({variable}){newline}")
    after = _add_import("".join(lines), tree, "from anvil_client.integrations.flask import Anvil")
    return _checked(path, source, after, "start the LIVE client with the Flask extension")


def _fastapi_change(path: Path, variable: str) -> FileChange | None:
    source = _read(path)
    if "anvil_client.integrations" in source:
        return None
    tree = _parse(path, source)
    found = _find_assigned_call(tree, variable, "FastAPI")
    if found is None:
        raise InstallError(
            f"cannot find `{variable} = FastAPI(...)` in {path}; pass lifespan=anvil_lifespan to it by hand"
        )
    _, call = found
    existing = next((k for k in call.keywords if k.arg == "lifespan"), None)
    if existing is not None:
        name = "wrap_lifespan"
        start = _offset(source, existing.value.lineno, existing.value.col_offset)
        end = _offset(source, existing.value.end_lineno, existing.value.end_col_offset)
        after = source[:start] + f"wrap_lifespan({source[start:end]})" + source[end:]
    else:
        name = "anvil_lifespan"
        after = _append_to_sequence(source, [*call.args, *call.keywords], call, "lifespan=anvil_lifespan")
    after = _add_import(after, tree, f"from anvil_client.integrations.fastapi import {name}")
    return _checked(path, source, after, "start the LIVE client in the application's lifespan")


def _find_assigned_call(tree: ast.Module, variable: str, name: str) -> tuple[ast.stmt, ast.Call] | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            func = node.value.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if called == name and any(isinstance(t, ast.Name) and t.id == variable for t in targets):
                return node, node.value
    return None


def _append_to_sequence(
    source: str, items: Sequence[ast.expr | ast.keyword], container: ast.expr, text: str
) -> str:
    """Add ``text`` as the last item of a bracketed list, tuple or call, in the style already used there."""
    close = _offset(source, container.end_lineno, container.end_col_offset) - 1  # the closing bracket
    if not items:
        return source[:close] + text + source[close:]
    last = items[-1]
    last_end = _offset(source, last.end_lineno, last.end_col_offset)
    between = source[last_end:close]
    if "\n" not in between:  # `[a, b]` or `FastAPI(title="x")`: stay on one line
        return source[:last_end] + f", {text}" + source[close:]
    code = between.split("#", 1)[0]
    comma_at = last_end + code.index(",") + 1 if code.strip().startswith(",") else None
    head = source[:last_end] + "," if comma_at is None else source[:comma_at]
    rest = source[last_end:] if comma_at is None else source[comma_at:]
    line_start = source.rfind("\n", 0, last_end) + 1
    indent = _indent(source[line_start:])
    line_end = rest.index("\n")  # the new item goes on its own line, after the last item's line
    return head + rest[: line_end + 1] + f"{indent}{text},{_newline(source)}" + rest[line_end + 1 :]


def _add_import(source: str, tree: ast.Module, statement: str) -> str:
    """Insert ``statement`` after the module's leading imports (docstring and ``__future__`` kept first)."""
    last = None
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            last = node
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and last is None:
            continue  # the module docstring
        else:
            break
    lines = source.splitlines(keepends=True)
    newline = _newline(source)
    if last is None:
        index = 0
        first = tree.body[0] if tree.body else None
        if first and isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            index = first.end_lineno or 0
        lines.insert(index, statement + newline)
    else:
        lines.insert(last.end_lineno or last.lineno, statement + newline)
    return "".join(lines)


def _checked(path: Path, before: str, after: str, reason: str) -> FileChange:
    try:
        ast.parse(after, filename=str(path))
    except SyntaxError as exc:  # a bug in the edit: never write code that does not parse
        raise InstallError(f"the edit of {path} would not be valid Python ({exc.msg}); edit it by hand") from exc
    return FileChange(path, before, after, reason)


def _parse(path: Path, source: str) -> ast.Module:
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise InstallError(f"{path} is not valid Python (line {exc.lineno}: {exc.msg}); fix it first") from exc


def _offset(source: str, line: int | None, column: int | None) -> int:
    """The string index of an ast position (``column`` counts UTF-8 bytes)."""
    assert line is not None and column is not None
    starts = [0]
    for match in re.finditer("\n", source):
        starts.append(match.end())
    start = starts[line - 1]
    line_text = source[start:].split("\n", 1)[0]
    return start + len(line_text.encode("utf-8")[:column].decode("utf-8", errors="ignore"))


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _newline(source: str) -> str:
    return "\r\n" if "\r\n" in source else "\n"


def _relative(path: Path | None, root: Path) -> str:
    if path is None:
        return "?"
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            return ""
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _write(path: Path, text: str) -> None:
    """Atomic replace, keeping the file's permissions."""
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    tmp = path.with_name(f".{path.name}.anvil-install.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


__all__ = ["FRAMEWORKS", "Detected", "FileChange", "InstallError", "Plan", "apply_plan", "detect", "plan_install"]
