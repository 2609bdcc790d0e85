"""The prompt file format: a directory of prompt files, one per prompt, read by import and written by export.

Layout (``docs/import-export.md`` is the reference)::

    greeting.welcome.j2      one prompt: its id is the file name without the extension (.j2, .txt or .md)
    errors.not_found.txt
    set.yaml                 optional: the set's name and description

A prompt file may start with YAML front matter between two ``---`` lines (``description``, ``parameters``,
``metadata``, ``tests``); the rest is the template, exactly, except that the file's last newline is not part of it.
Export writes this layout with :func:`export_files`; importing an export changes nothing.

Sources read by :func:`load_path` and :func:`load_upload`: such a directory, a ``.zip`` of one, an
``anvil.bundle/1`` file, or a Langfuse prompt export (the JSON of its prompts API). Everything refused
raises :class:`ImportFormatError`, naming the file and, where there is one, the line. Nothing here touches
the database.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from anvil_client import BundleError
from anvil_client.bundle import (
    FORMAT as BUNDLE_FORMAT,
)
from anvil_client.bundle import (
    PARAMETER_TYPES,
    PROMPT_ID_PATTERN,
    canonical_json,
    load_bundle,
    normalise_prompt,
)
from anvil_client.templates import TemplateError
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts.analysis import (
    MAX_PROMPTS_PER_SET,
    MAX_TEMPLATE_BYTES,
    template_variables,
    validate_prompt_fields,
    validate_prompt_id,
)
from anvil_forge.prompts.samples import CHECK_KINDS, validate_tests

EXTENSIONS = (".j2", ".txt", ".md")
EXPORT_EXTENSION = ".j2"
SET_FILE = "set.yaml"
# Limits, named in the errors that refuse them.
MAX_FILE_BYTES = MAX_TEMPLATE_BYTES + 64 * 1024  # one prompt file: its template and its front matter
MAX_FILES = MAX_PROMPTS_PER_SET + 1  # the prompts and set.yaml
MAX_TOTAL_BYTES = 32 * 1024 * 1024  # everything read from one source, uncompressed
MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # one web upload, or one .zip / JSON file as it is on disk
MAX_ZIP_ENTRIES = 2 * MAX_FILES

_FRONT_KEYS = ("description", "parameters", "metadata", "tests")
_TEST_KEYS = ("values", "checks")
_PARAMETER_KEYS = ("type", "required", "default", "description")
_SET_KEYS = ("name", "description")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _kb(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


class ImportFormatError(ApplicationError):
    """A source that cannot be imported: ``file`` and ``line`` (when known) say where."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        where = file or ""
        if file and line:
            where = f"{file}, line {line}"
        super().__init__(f"{where}: {message}" if where else message, {"file": file, "line": line})
        self.file = file
        self.line = line
        self.problem = message


@dataclass
class Collection:
    """Prompts read from one source, normalised and sorted by id, and the set's name and description if given."""

    prompts: list[dict[str, Any]]
    origin: str  # directory, zip, files, bundle, langfuse
    set_name: str | None = None
    set_description: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [p["id"] for p in self.prompts]

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "origin": self.origin,
            "set_name": self.set_name,
            "set_description": self.set_description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Collection:
        """Rebuild a collection saved with :meth:`to_json`, checking every prompt again."""
        prompts = [_checked_prompt(dict(p), file=f"{p.get('id', '?')}") for p in data["prompts"]]
        return _collection(prompts, data["origin"], data.get("set_name"), data.get("set_description"), "upload")


# Reading one prompt file -----------------------------------------------------------------------------------


def prompt_id_of(filename: str) -> str | None:
    """The id a file name carries (``greeting.welcome.j2`` -> ``greeting.welcome``); None if not a prompt file."""
    for extension in EXTENSIONS:
        if filename.endswith(extension):
            return filename[: -len(extension)]
    return None


def parse_prompt_file(filename: str, data: bytes) -> dict[str, Any]:
    """One prompt file's prompt (normalised), or :class:`ImportFormatError` saying what is wrong and where."""
    key = prompt_id_of(filename)
    if key is None:
        raise ImportFormatError(f"not a prompt file: prompt files end in {', '.join(EXTENSIONS)}", file=filename)
    if not isinstance(key, str) or len(key) > 200 or not PROMPT_ID_PATTERN.match(key):
        raise ImportFormatError(
            f"{key!r} is not a valid prompt id: name prompt files by their id, lowercase words of letters, digits "
            "and _ joined by dots, each starting with a letter (for example greeting.welcome.j2)",
            file=filename,
        )
    text = _text(filename, data)
    lines = text.splitlines(keepends=True)
    front: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    body_line = 1
    if lines and lines[0].rstrip() == "---":
        close = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
        if close is None:
            raise ImportFormatError("the front matter opened with --- is never closed by a --- line", file=filename,
                                    line=1)
        front, key_lines = _front_matter(filename, "".join(lines[1:close]), first_line=2)
        body = "".join(lines[close + 1 :])
        body_line = close + 2
    else:
        body = text
    if body.endswith("\n"):
        body = body[:-1]  # the file's last newline is not part of the template
    description = front.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise ImportFormatError("description must be text", file=filename, line=key_lines.get("description"))
    parameters = _parameters(filename, front.get("parameters"), key_lines)
    metadata = front.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise ImportFormatError(
            "metadata must be a mapping of names to values (for example model: gpt-4o)",
            file=filename,
            line=key_lines.get("metadata"),
        )
    prompt = {"id": key, "template": body, "description": description, "parameters": parameters, "metadata": metadata}
    tests = _tests(filename, front.get("tests"), key_lines)
    if tests:
        prompt["tests"] = tests
    return _checked_prompt(prompt, file=filename, body_line=body_line, key_lines=key_lines)


def _text(filename: str, data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise ImportFormatError(f"the file is larger than {_kb(MAX_FILE_BYTES)}, the limit for one file", file=filename)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFormatError(f"not UTF-8 text (byte {exc.start} cannot be decoded)", file=filename,
                                line=line) from None


def _front_matter(filename: str, text: str, *, first_line: int) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse YAML front matter: the values, and the file line of each top-level and parameter key."""
    data, node = _yaml(filename, text, first_line=first_line)
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ImportFormatError("the front matter must be a mapping (description:, parameters:, metadata:)",
                                file=filename, line=first_line)
    lines = _key_lines(node, first_line)
    for key in data:
        if key not in _FRONT_KEYS:
            raise ImportFormatError(
                f"unknown front matter key {key!r} (use {', '.join(_FRONT_KEYS)})", file=filename,
                line=lines.get(str(key)),
            )
    for section in ("parameters", "tests"):
        section_node = _value_node(node, section)
        if section_node is not None:
            lines.update({f"{section}.{k}": v for k, v in _key_lines(section_node, first_line).items()})
    return data, lines


def _yaml(filename: str, text: str, *, first_line: int) -> tuple[Any, Any]:
    """Safe YAML: no aliases (they can blow up), no repeated keys; errors carry the file line."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ImportFormatError("YAML aliases (*name) are not accepted", file=filename,
                                        line=first_line + event.start_mark.line)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _refuse_repeated_keys(filename, node, first_line)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = first_line + mark.line if mark is not None else first_line
        raise ImportFormatError(f"invalid YAML: {problem}", file=filename, line=line) from None
    except RecursionError:
        raise ImportFormatError("invalid YAML: nested too deeply", file=filename, line=first_line) from None
    return data, node


def _refuse_repeated_keys(filename: str, node: Any, first_line: int, depth: int = 0) -> None:
    if depth > 50:
        raise ImportFormatError("invalid YAML: nested too deeply", file=filename, line=first_line)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = getattr(key_node, "value", None)
            if isinstance(key, str):
                if key in seen:
                    raise ImportFormatError(f"{key!r} is given twice", file=filename,
                                            line=first_line + key_node.start_mark.line)
                seen.add(key)
            _refuse_repeated_keys(filename, value_node, first_line, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(filename, item, first_line, depth + 1)


def _key_lines(node: Any, first_line: int) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): first_line + k.start_mark.line for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _value_node(node: Any, key: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node
    return None


def _parameters(filename: str, value: Any, lines: dict[str, int]) -> list[dict[str, Any]]:
    """``parameters:`` maps each name to its type (``name: string``) or to type, required, default, description."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ImportFormatError(
            "parameters must map each parameter's name to its type or to type, required, default, description",
            file=filename, line=lines.get("parameters"),
        )
    out: list[dict[str, Any]] = []
    for name, spec in value.items():
        line = lines.get(f"parameters.{name}", lines.get("parameters"))
        if not isinstance(name, str):
            raise ImportFormatError(f"parameter name {name!r} must be text", file=filename, line=line)
        if isinstance(spec, str) or spec is None:
            spec = {"type": spec or "string"}
        if not isinstance(spec, dict):
            raise ImportFormatError(
                f"parameter {name}: give its type (string, number...) or a mapping of type, required, default, "
                "description", file=filename, line=line,
            )
        for key in spec:
            if key not in _PARAMETER_KEYS:
                raise ImportFormatError(f"parameter {name}: unknown key {key!r} (use {', '.join(_PARAMETER_KEYS)})",
                                        file=filename, line=line)
        kind = spec.get("type", "string")
        if kind not in PARAMETER_TYPES:
            raise ImportFormatError(
                f"parameter {name}: unknown type {kind!r} (use {', '.join(PARAMETER_TYPES)})", file=filename, line=line
            )
        if not isinstance(spec.get("required", False), bool):
            raise ImportFormatError(f"parameter {name}: required must be true or false", file=filename, line=line)
        description = spec.get("description") or ""
        if not isinstance(description, str):
            raise ImportFormatError(f"parameter {name}: description must be text", file=filename, line=line)
        out.append({"name": name, "type": kind, "required": spec.get("required", False),
                    "default": spec.get("default"), "description": description})
    return out


def _tests(filename: str, value: Any, lines: dict[str, int]) -> list[dict[str, Any]]:
    """``tests:`` maps each sample's name to its ``values`` (parameter: value) and ``checks``, a list of
    one-key mappings (``- contains: Ada``, ``- max_chars: 200``, ``- json: true``); the samples' own rules are
    :func:`~anvil_forge.prompts.samples.validate_tests`'s, checked with the prompt."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ImportFormatError("tests must map each test case's name to its values and checks", file=filename,
                                line=lines.get("tests"))
    out: list[dict[str, Any]] = []
    for name, spec in value.items():
        line = lines.get(f"tests.{name}", lines.get("tests"))
        if not isinstance(name, str):
            raise ImportFormatError(f"test case name {name!r} must be text (quote it)", file=filename, line=line)
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise ImportFormatError(f"test case {name}: give a mapping of values and checks", file=filename,
                                    line=line)
        for key in spec:
            if key not in _TEST_KEYS:
                raise ImportFormatError(f"test case {name}: unknown key {key!r} (use {', '.join(_TEST_KEYS)})",
                                        file=filename, line=line)
        values = spec.get("values")
        if values is not None and (not isinstance(values, dict) or not all(isinstance(k, str) for k in values)):
            raise ImportFormatError(f"test case {name}: values must map parameter names to values", file=filename,
                                    line=line)
        checks_spec = spec.get("checks")
        if checks_spec is None:
            checks_spec = []
        if not isinstance(checks_spec, list):
            raise ImportFormatError(f"test case {name}: checks must be a list (- contains: text)", file=filename,
                                    line=line)
        checks: list[dict[str, Any]] = []
        for number, check in enumerate(checks_spec, start=1):
            if not isinstance(check, dict) or len(check) != 1:
                raise ImportFormatError(
                    f"test case {name}, check {number}: write each check as one kind and its value (use "
                    f"{', '.join(CHECK_KINDS)}; for example - contains: Hello)", file=filename, line=line,
                )
            ((kind, check_value),) = check.items()
            checks.append({"kind": kind, "value": check_value})
        out.append({"name": name, "values": values or {}, "checks": checks})
    return out


def _checked_prompt(
    prompt: dict[str, Any],
    *,
    file: str,
    body_line: int = 1,
    key_lines: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The FORGE's own checks (the editor's), mapped to the file and line."""
    key_lines = key_lines or {}
    try:
        parameters = validate_prompt_fields(
            key=prompt.get("id"),
            template=prompt.get("template"),
            description=prompt.get("description", ""),
            parameters=prompt.get("parameters", []),
            metadata=prompt.get("metadata", {}),
        )
    except ApplicationError as exc:
        extra = exc.extra or {}
        line: int | None = None
        if extra.get("field") == "template" and isinstance(extra.get("line"), int):
            line = body_line + extra["line"] - 1
            raise ImportFormatError(f"template syntax error: {extra.get('message')}", file=file, line=line) from None
        field_name = str(extra.get("field") or "")
        if field_name.startswith("parameters"):
            line = key_lines.get("parameters")
        elif "metadata" in exc.message:
            line = key_lines.get("metadata")
        elif "description" in exc.message:
            line = key_lines.get("description")
        raise ImportFormatError(exc.message.rstrip("."), file=file, line=line) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise ImportFormatError(f"cannot be read: {exc}", file=file) from None
    checked = normalise_prompt({**prompt, "parameters": parameters})
    if prompt.get("tests"):
        names = [t.get("name") if isinstance(t, Mapping) else None for t in prompt["tests"]] \
            if isinstance(prompt["tests"], list) else []
        try:
            tests = validate_tests(key=checked["id"], tests=prompt["tests"], parameters=parameters)
        except ApplicationError as exc:
            index = exc.extra.get("sample")
            named = names[index - 1] if isinstance(index, int) and 0 < index <= len(names) else None
            line = key_lines.get(f"tests.{named}", key_lines.get("tests"))
            raise ImportFormatError(exc.message.removeprefix(f"{checked['id']}, ").rstrip("."), file=file,
                                    line=line) from None
        if tests:
            checked["tests"] = tests
    try:
        canonical_json(checked)
    except (TypeError, ValueError) as exc:  # NaN, infinity, dates...: not plain JSON
        raise ImportFormatError(f"holds a value that is not plain JSON: {exc}", file=file,
                                line=key_lines.get("parameters")) from None
    return checked


# Reading a set of files ------------------------------------------------------------------------------------


def parse_set_file(data: bytes, filename: str = SET_FILE) -> tuple[str | None, str | None]:
    """``set.yaml``: the set's name and description (either may be absent)."""
    text = _text(filename, data)
    value, node = _yaml(filename, text, first_line=1)
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise ImportFormatError("must be a mapping with name: and description:", file=filename, line=1)
    lines = _key_lines(node, 1)
    for key in value:
        if key not in _SET_KEYS:
            raise ImportFormatError(f"unknown key {key!r} (use {', '.join(_SET_KEYS)})", file=filename,
                                    line=lines.get(str(key)))
    name, description = value.get("name"), value.get("description")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise ImportFormatError("name must be text of 1 to 200 characters", file=filename, line=lines.get("name"))
    if description is not None and (not isinstance(description, str) or len(description) > 5_000):
        raise ImportFormatError("description must be text of at most 5000 characters", file=filename,
                                line=lines.get("description"))
    return name, description


def parse_files(files: Iterable[tuple[str, bytes]], *, origin: str) -> Collection:
    """Prompt files (and an optional ``set.yaml``), by file name, into one collection."""
    prompts: list[dict[str, Any]] = []
    where: dict[str, str] = {}
    set_name = set_description = None
    total = 0
    for count, (filename, data) in enumerate(files, start=1):
        if count > MAX_FILES:
            raise ImportFormatError(f"more than {MAX_FILES} files (a set holds at most {MAX_PROMPTS_PER_SET} prompts)")
        total += len(data)
        if total > MAX_TOTAL_BYTES:
            raise ImportFormatError(f"the files add up to more than {_kb(MAX_TOTAL_BYTES)}, the limit for one import")
        if filename == SET_FILE:
            set_name, set_description = parse_set_file(data)
            continue
        prompt = parse_prompt_file(filename, data)
        if prompt["id"] in where:
            raise ImportFormatError(
                f"duplicate prompt id {prompt['id']}: {where[prompt['id']]} has it too", file=filename
            )
        where[prompt["id"]] = filename
        prompts.append(prompt)
    return _collection(prompts, origin, set_name, set_description, "files")


def _collection(
    prompts: list[dict[str, Any]], origin: str, set_name: str | None, set_description: str | None, what: str
) -> Collection:
    if len(prompts) > MAX_PROMPTS_PER_SET:
        raise ImportFormatError(f"more than {MAX_PROMPTS_PER_SET} prompts, the limit for one set")
    ids = [p["id"] for p in prompts]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ImportFormatError(f"duplicate prompt id {duplicate} in the {what}")
    return Collection(sorted(prompts, key=lambda p: p["id"]), origin, set_name, set_description)


def read_directory(path: Path) -> Collection:
    """A directory of prompt files. Hidden entries (.git, .DS_Store) are skipped; subdirectories are refused."""
    files: list[tuple[str, bytes]] = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            raise ImportFormatError("prompt files sit at the top of the directory; subdirectories are not read",
                                    file=entry.name + "/")
        if len(files) >= MAX_FILES:
            raise ImportFormatError(f"more than {MAX_FILES} files (a set holds at most {MAX_PROMPTS_PER_SET} prompts)")
        if entry.name != SET_FILE and prompt_id_of(entry.name) is None:
            raise ImportFormatError(
                f"not a prompt file: prompt files end in {', '.join(EXTENSIONS)} (or are {SET_FILE})", file=entry.name
            )
        size = entry.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImportFormatError(f"the file is larger than {_kb(MAX_FILE_BYTES)}, the limit for one file",
                                    file=entry.name)
        files.append((entry.name, entry.read_bytes()))
    return parse_files(files, origin="directory")


def read_zip(data: bytes, *, name: str = "upload.zip") -> Collection:
    """A ``.zip`` of a prompt directory (its files at the top, or inside one folder)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImportFormatError(f"the zip is larger than {_kb(MAX_UPLOAD_BYTES)}, the limit", file=name)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise ImportFormatError(f"more than {MAX_ZIP_ENTRIES} entries, the limit for one zip", file=name)
        entries: list[tuple[str, zipfile.ZipInfo]] = []
        for info in infos:
            entry = info.filename
            parts = re.split(r"[/\\]", entry)
            if entry.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", entry):
                raise ImportFormatError(f"entry {entry!r} has an absolute path; nothing was imported", file=name)
            if ".." in parts:
                raise ImportFormatError(f"entry {entry!r} climbs out of the archive (..); nothing was imported",
                                        file=name)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise ImportFormatError(f"entry {entry!r} is a symbolic link; nothing was imported", file=name)
            if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts if p):
                continue
            entries.append(("/".join(p for p in parts if p), info))
        declared = sum(info.file_size for _, info in entries)
        if declared > MAX_TOTAL_BYTES:
            raise ImportFormatError(
                f"the zip expands to {declared} bytes, more than {_kb(MAX_TOTAL_BYTES)} (the limit); nothing was "
                "imported", file=name,
            )
        entries = _strip_common_folder(entries)
        files: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        total = 0
        for entry, info in entries:
            if "/" in entry:
                raise ImportFormatError(
                    f"entry {entry!r} is in a subfolder: prompt files sit at the top of the zip (or of one folder)",
                    file=name,
                )
            if entry in seen:
                raise ImportFormatError(f"entry {entry!r} appears twice", file=name)
            seen.add(entry)
            if info.file_size > MAX_FILE_BYTES:
                raise ImportFormatError(
                    f"entry {entry!r} expands beyond {_kb(MAX_FILE_BYTES)}, the limit for one file", file=name
                )
            with archive.open(info) as handle:
                content = handle.read(MAX_FILE_BYTES + 1)
            if len(content) > MAX_FILE_BYTES:
                raise ImportFormatError(
                    f"entry {entry!r} expands beyond {_kb(MAX_FILE_BYTES)}, the limit for one file", file=name
                )
            total += len(content)
            if total > MAX_TOTAL_BYTES:
                raise ImportFormatError(f"the zip expands to more than {_kb(MAX_TOTAL_BYTES)}, the limit", file=name)
            files.append((entry, content))
    except ImportFormatError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError,
            ValueError, OverflowError, OSError) as exc:
        raise ImportFormatError(f"not a readable zip file: {exc}", file=name) from None
    return parse_files(files, origin="zip")


def _strip_common_folder(entries: list[tuple[str, zipfile.ZipInfo]]) -> list[tuple[str, zipfile.ZipInfo]]:
    firsts = {entry.split("/", 1)[0] for entry, _ in entries}
    if len(firsts) == 1 and all("/" in entry for entry, _ in entries):
        return [(entry.split("/", 1)[1], info) for entry, info in entries]
    return entries


# Bundles and Langfuse exports ------------------------------------------------------------------------------


def read_json(data: bytes, *, name: str) -> Collection:
    """An ``anvil.bundle/1`` file or a Langfuse prompt export, told apart by their shape."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImportFormatError(f"the file is larger than {_kb(MAX_UPLOAD_BYTES)}, the limit", file=name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"not UTF-8 text (byte {exc.start} cannot be decoded)", file=name,
                                line=data[: exc.start].count(b"\n") + 1) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"not valid JSON: {exc.msg}", file=name, line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise ImportFormatError(f"not valid JSON: {exc}", file=name) from None
    if isinstance(document, dict) and "format" in document:
        return read_bundle(data, name=name)
    return read_langfuse(document, name=name)


def read_bundle(data: bytes, *, name: str) -> Collection:
    """The prompts of an ``anvil.bundle/1`` file (its digests are verified first)."""
    try:
        bundle = load_bundle(data)
    except BundleError as exc:
        raise ImportFormatError(f"not a valid {BUNDLE_FORMAT} file: {exc}", file=name) from None
    prompts = [_checked_prompt(dict(p), file=f"{name} ({p.get('id')})") for p in bundle.raw["prompts"]]
    return _collection(prompts, "bundle", None, None, "bundle")


def langfuse_prompt_id(name: str) -> str:
    """The Anvil id for a Langfuse prompt name: lowercase, ``/`` becomes ``.``, ``-`` and spaces become ``_``."""
    return re.sub(r"[-\s]+", "_", name.strip().lower()).replace("/", ".")


def read_langfuse(document: Any, *, name: str) -> Collection:
    """A Langfuse prompt export: one prompt object, a list of them, or ``{"data": [...]}``.

    Text prompts become templates (``{{var}}`` kept: Jinja reads it the same way), each variable a required
    string parameter, ``config`` the metadata. Where an export holds several versions of a prompt, the one
    labelled ``production`` is taken, else the newest. Chat prompts are refused, by name.
    """
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        items = document["data"]
    elif isinstance(document, list):
        items = document
    elif isinstance(document, dict) and "name" in document:
        items = [document]
    else:
        raise ImportFormatError(
            f"neither an {BUNDLE_FORMAT} file nor a Langfuse prompt export (a prompt object, a list of them, or "
            '{"data": [...]})', file=name,
        )
    chosen: dict[str, dict[str, Any]] = {}
    chat: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise ImportFormatError(f"item {index} is not a Langfuse prompt (an object with a name)", file=name)
        prompt_name = item["name"]
        body = item.get("prompt")
        kind = item.get("type", "chat" if isinstance(body, list) else "text")
        if kind == "chat" or isinstance(body, list):
            chat.append(prompt_name)
            continue
        if kind != "text":
            raise ImportFormatError(f"prompt {prompt_name!r} has type {kind!r}; only text prompts are imported",
                                    file=name)
        if body is None and "versions" in item:
            raise ImportFormatError(
                f"prompt {prompt_name!r} has no text: this is Langfuse's prompt list (GET /api/public/v2/prompts), "
                "which carries only names; export each prompt with GET /api/public/v2/prompts/{name}", file=name,
            )
        if not isinstance(body, str):
            raise ImportFormatError(f"prompt {prompt_name!r} has no text (its prompt field)", file=name)
        version = item.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            version = 0
        labels = item.get("labels") if isinstance(item.get("labels"), list) else []
        rank = (1 if "production" in labels else 0, version)
        key = langfuse_prompt_id(prompt_name)
        current = chosen.get(key)
        if current is not None and current["name"] != prompt_name:
            raise ImportFormatError(
                f"duplicate prompt id {key}: Langfuse prompts {current['name']!r} and {prompt_name!r} both become it",
                file=name,
            )
        if current is None or rank > current["rank"]:
            chosen[key] = {"name": prompt_name, "rank": rank, "item": item, "text": body, "version": version}
    if chat:
        raise ImportFormatError(
            f"Langfuse chat prompts cannot be imported (Anvil prompts are text templates): {', '.join(sorted(chat))}. "
            "Leave them out of the export, or make them text prompts; nothing was imported.",
            file=name,
        )
    prompts: list[dict[str, Any]] = []
    for key, entry in chosen.items():
        where = f"{name} ({entry['name']})"
        try:
            validate_prompt_id(key)
        except ApplicationError:
            raise ImportFormatError(
                f"Langfuse prompt {entry['name']!r} becomes {key!r}, which is not a valid prompt id (lowercase words "
                "of letters, digits and _ joined by dots); rename it in Langfuse first", file=name,
            ) from None
        try:
            variables = template_variables(entry["text"])
        except TemplateError as exc:
            raise ImportFormatError(f"template syntax error: {exc.message}", file=where, line=exc.line) from None
        config = entry["item"].get("config")
        metadata = config if isinstance(config, dict) else {}
        prompt = {
            "id": key,
            "template": entry["text"],
            "description": f"From Langfuse prompt {entry['name']} version {entry['version']}.",
            "parameters": [{"name": v, "type": "string", "required": True} for v in variables],
            "metadata": metadata,
        }
        prompts.append(_checked_prompt(prompt, file=where))
    return _collection(prompts, "langfuse", None, None, "Langfuse export")


# Sources ---------------------------------------------------------------------------------------------------


def load_path(path: Path) -> Collection:
    """Whatever ``anvil-forge import`` was given: a directory, a .zip, a bundle or Langfuse JSON, or one prompt file."""
    if path.is_dir():
        return read_directory(path)
    if not path.exists():
        raise ImportFormatError("no such file or directory", file=str(path))
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise ImportFormatError(f"the file is larger than {_kb(MAX_UPLOAD_BYTES)}, the limit", file=path.name)
    return load_upload([(path.name, path.read_bytes())])


def load_upload(files: list[tuple[str, bytes]]) -> Collection:
    """Uploaded files: one .zip, one JSON export, or prompt files (and set.yaml)."""
    if not files:
        raise ImportFormatError("no files were given: choose prompt files or a .zip")
    if sum(len(data) for _, data in files) > MAX_UPLOAD_BYTES:
        raise ImportFormatError(f"the upload is larger than {_kb(MAX_UPLOAD_BYTES)}, the limit")
    names = [PurePosixPath(name.replace("\\", "/")).name for name, _ in files]
    if len(files) == 1:
        name, data = names[0], files[0][1]
        if name.lower().endswith(".zip") or data[:4] == b"PK\x03\x04":
            return read_zip(data, name=name)
        if name.lower().endswith(".json"):
            return read_json(data, name=name)
    for name in names:
        if name.lower().endswith((".zip", ".json")):
            raise ImportFormatError("upload a .zip or a JSON export on its own, not with other files", file=name)
    return parse_files(list(zip(names, (data for _, data in files), strict=True)), origin="files")


# Writing ---------------------------------------------------------------------------------------------------


def serialise_prompt(prompt: Mapping[str, Any]) -> str:
    """One prompt file's text: front matter when there is something to say, then the template and a newline."""
    tests = prompt.get("tests") or []
    prompt = normalise_prompt(prompt)
    front: dict[str, Any] = {}
    if prompt["description"]:
        front["description"] = prompt["description"]
    if prompt["parameters"]:
        front["parameters"] = {p["name"]: _parameter_yaml(p) for p in prompt["parameters"]}
    if prompt["metadata"]:
        front["metadata"] = prompt["metadata"]
    if tests:
        front["tests"] = {t["name"]: _test_yaml(t) for t in tests}
    template = prompt["template"]
    first = template.splitlines()[0] if template else ""
    text = ""
    if front or first.rstrip() == "---":
        dumped = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False) if front else ""
        text = "---\n" + dumped + "---\n"
    return text + template + "\n"


def _parameter_yaml(parameter: Mapping[str, Any]) -> Any:
    extra = {
        key: parameter[key]
        for key, plain in (("required", False), ("default", None), ("description", ""))
        if parameter[key] != plain or type(parameter[key]) is not type(plain)
    }
    return {"type": parameter["type"], **extra} if extra else parameter["type"]


def _test_yaml(test: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if test.get("values"):
        out["values"] = dict(test["values"])
    if test.get("checks"):
        out["checks"] = [{c["kind"]: c.get("value", True) if c["kind"] == "json" else c["value"]}
                         for c in test["checks"]]
    return out


def serialise_set(name: str, description: str = "") -> str:
    value = {"name": name, **({"description": description} if description else {})}
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)


def export_files(*, name: str, description: str, prompts: Iterable[Mapping[str, Any]]) -> list[tuple[str, bytes]]:
    """The files of an export: ``set.yaml`` and one ``<id>.j2`` per prompt, by name."""
    files = [(SET_FILE, serialise_set(name, description).encode("utf-8"))]
    for prompt in sorted(prompts, key=lambda p: p["id"]):
        files.append((prompt["id"] + EXPORT_EXTENSION, serialise_prompt(prompt).encode("utf-8")))
    return files


def write_directory(files: Iterable[tuple[str, bytes]], out: Path) -> list[Path]:
    """Write an export into ``out`` (made if missing; refused when it holds anything)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImportFormatError(
            "is not an empty directory; export into a new or empty one so no stale prompt file stays behind",
            file=str(out),
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, data in files:
        target = out / filename
        target.write_bytes(data)
        written.append(target)
    return written


def build_zip(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A zip of an export, files at the top, with fixed dates (the same content gives the same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for filename, data in files:
            info = zipfile.ZipInfo(filename, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
