"""The ``anvil.bundle/1`` format: one prompt set version, as canonical JSON with sha256 digests.

This module is the single definition of the format. The FORGE builds bundles with :func:`build_bundle`
and the LIVE client accepts them only through :func:`load_bundle`; ``docs/protocol.md`` documents it
and ships the JSON Schema.

Two digests protect a bundle:

* ``content_digest``: sha256 over the canonical JSON of ``{"prompts": [...]}``. It is the prompt set
  version's own digest in the FORGE, so two versions with the same content (a rollback) share it, and a
  version copied to another FORGE keeps it.
* ``digest``: sha256 over the canonical JSON of the whole bundle without the ``digest`` key, so every
  field (version number, environment, times) is covered, not only the prompts.

Canonical JSON: UTF-8, keys sorted, no insignificant white space, no NaN or infinity.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anvil_client._exceptions import BundleDigestError, BundleFormatError, BundleSchemaError

FORMAT = "anvil.bundle/1"
PROMPT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
PARAMETER_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PARAMETER_TYPES = ("string", "number", "boolean", "list", "object")
APPROVAL_STATES = ("approved", "in_review")
MAX_PROMPT_ID_LENGTH = 200
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
_MAPPINGS = (dict, Mapping)  # dict first: an exact type check is much cheaper than the ABC's
_PLAIN_DEFAULTS = (type(None), str, bool)  # defaults that are equal only when identical (1 == 1.0 == True)
_PROMPT_KEYS = frozenset({"id", "template", "description", "parameters", "metadata"})

_TOP_LEVEL_STRINGS = ("forge", "organisation", "project", "environment", "set", "created_at")
_OPTIONAL_STRINGS = ("created_by", "approved_at", "approved_by", "published_at", "published_by")
_KNOWN_KEYS = frozenset(
    {"format", "version", "approval", "prompts", "content_digest", "digest", *_TOP_LEVEL_STRINGS, *_OPTIONAL_STRINGS}
)


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` the one way digests are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def content_digest(prompts: list[dict[str, Any]]) -> str:
    """The digest of a prompt set version's content (its prompts, in id order)."""
    return sha256_digest(canonical_json({"prompts": prompts}))


def normalise_prompt(prompt: Mapping[str, Any]) -> dict[str, Any]:
    """A prompt with every field present, in the shape bundles and snapshots carry."""
    return {
        "id": prompt["id"],
        "template": prompt["template"],
        "description": prompt.get("description", "") or "",
        "parameters": [normalise_parameter(p) for p in prompt.get("parameters") or []],
        "metadata": dict(prompt.get("metadata") or {}),
    }


def normalise_parameter(parameter: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": parameter["name"],
        "type": parameter.get("type", "string"),
        "required": bool(parameter.get("required", False)),
        "default": parameter.get("default"),
        "description": parameter.get("description", "") or "",
    }


def build_bundle(
    *,
    forge: str,
    organisation: str,
    project: str,
    environment: str,
    set_slug: str,
    version: int,
    approval: str,
    prompts: list[Mapping[str, Any]],
    created_at: str,
    created_by: str | None = None,
    approved_at: str | None = None,
    approved_by: str | None = None,
    published_at: str | None = None,
    published_by: str | None = None,
) -> dict[str, Any]:
    """Assemble a bundle with both digests. Times are ISO 8601 strings in UTC."""
    normalised = sorted((normalise_prompt(p) for p in prompts), key=lambda p: p["id"])
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "forge": forge,
        "organisation": organisation,
        "project": project,
        "environment": environment,
        "set": set_slug,
        "version": version,
        "approval": approval,
        "created_at": created_at,
        "created_by": created_by,
        "approved_at": approved_at,
        "approved_by": approved_by,
        "published_at": published_at,
        "published_by": published_by,
        "prompts": normalised,
        "content_digest": content_digest(normalised),
    }
    bundle["digest"] = sha256_digest(canonical_json(bundle))
    return bundle


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: str
    required: bool
    default: Any
    description: str


@dataclass(frozen=True, slots=True)
class PromptSpec:
    id: str
    template: str
    description: str
    parameters: tuple[Parameter, ...]
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle. ``raw`` is the exact dict that was verified (to write back to disk as is)."""

    forge: str
    organisation: str
    project: str
    environment: str
    set: str
    version: int
    approval: str
    prompts: tuple[PromptSpec, ...]
    content_digest: str
    digest: str
    published_at: str | None
    raw: Mapping[str, Any]


def load_bundle(data: bytes | str | Mapping[str, Any]) -> Bundle:
    """Parse and verify a bundle; raise a :class:`BundleError` subclass saying what is wrong.

    Checks, in order: JSON, the format tag, the schema (every field, every prompt), then both digests.
    """
    return _load(data, digest_verified=False)


# In canonical JSON the top-level "digest" member is never first ("approval" sorts before it) and every
# member before it is a string, so the first match is the top-level one.
_DIGEST_MEMBER = re.compile(rb',"digest":"(sha256:[0-9a-f]{64})"')


def load_stored_bundle(data: bytes) -> Bundle:
    """:func:`load_bundle` for bytes that should be a bundle's canonical JSON (the client's disk cache).

    When the bytes without their ``digest`` member hash to that digest, they are exactly the bytes the
    digest was computed over: the bundle is whole, and serialising it again to check (most of a load's
    time) is skipped. The content digest, a field inside those bytes, was checked when the bundle was first
    received. Anything else (not canonical, corrupt, tampered with) gets the full :func:`load_bundle`.
    """
    member = _DIGEST_MEMBER.search(data) if len(data) <= MAX_BUNDLE_BYTES else None
    if member is not None:
        digest = member[1].decode()
        if sha256_digest(data[: member.start()] + data[member.end() :]) == digest:
            bundle = _load(data, digest_verified=True)  # format and schema: refused as load_bundle would
            if bundle.digest == digest:
                return bundle
    return load_bundle(data)


def _load(data: bytes | str | Mapping[str, Any], *, digest_verified: bool) -> Bundle:
    text: str | None
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleFormatError(f"bundle is {len(data)} bytes, more than the {MAX_BUNDLE_BYTES} allowed")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleFormatError(f"bundle is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    else:
        text = data if isinstance(data, str) else None
    if text is not None:
        try:
            parsed = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise BundleFormatError(f"bundle is not valid JSON: {exc}") from exc
    else:
        parsed = data
    if not isinstance(parsed, Mapping):
        raise BundleFormatError(f"bundle must be a JSON object, not {_json_type(parsed)}")
    if parsed.get("format") != FORMAT:
        raise BundleFormatError(f"unknown bundle format {parsed.get('format')!r}; expected {FORMAT!r}")
    prompts = _check_schema(parsed)
    if not digest_verified:
        _check_digests(parsed)
    return Bundle(
        forge=parsed["forge"],
        organisation=parsed["organisation"],
        project=parsed["project"],
        environment=parsed["environment"],
        set=parsed["set"],
        version=parsed["version"],
        approval=parsed["approval"],
        prompts=prompts,
        content_digest=parsed["content_digest"],
        digest=parsed["digest"],
        published_at=parsed.get("published_at"),
        raw=parsed,
    )


def _check_digests(parsed: Mapping[str, Any]) -> None:
    try:
        # The prompts are serialised once and reused in both digests (they are most of a bundle).
        prompts_json = canonical_json(parsed["prompts"])
        expected_content = sha256_digest(b'{"prompts":' + prompts_json + b"}")
        expected_digest = sha256_digest(_canonical_with(parsed, skip="digest", prompts_json=prompts_json))
    except (TypeError, ValueError, RecursionError) as exc:  # values json cannot serialise canonically
        raise BundleSchemaError("prompts", f"cannot be serialised canonically: {exc}") from exc
    if parsed["content_digest"] != expected_content:
        raise BundleDigestError(
            f"content_digest does not match the prompts: bundle says {parsed['content_digest']}, "
            f"content is {expected_content}"
        )
    if parsed["digest"] != expected_digest:
        raise BundleDigestError(
            f"digest does not match the bundle: bundle says {parsed['digest']}, content is {expected_digest}"
        )


def parameter_problems(parameters: Any, path: str = "parameters") -> list[tuple[str, str]]:
    """Every problem with a list of parameter declarations, as ``(path, problem)`` pairs."""
    if not isinstance(parameters, list):
        return [(path, f"must be a list, not {_json_type(parameters)}")]
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, parameter in enumerate(parameters):
        where = f"{path}[{index}]"
        if not isinstance(parameter, _MAPPINGS):
            problems.append((where, f"must be an object, not {_json_type(parameter)}"))
            continue
        name = parameter.get("name")
        if not isinstance(name, str) or not PARAMETER_NAME_PATTERN.match(name):
            problems.append((f"{where}.name", f"{name!r} is not a valid variable name (letters, digits, _)"))
        elif name in seen:
            problems.append((f"{where}.name", f"{name!r} is declared twice"))
        else:
            seen.add(name)
        kind = parameter.get("type")
        if kind not in PARAMETER_TYPES:
            problems.append((f"{where}.type", f"{kind!r} is not one of {', '.join(PARAMETER_TYPES)}"))
        required = parameter.get("required", False)
        if not isinstance(required, bool):
            problems.append((f"{where}.required", "must be true or false"))
        default = parameter.get("default")
        if kind in PARAMETER_TYPES and default is not None and not value_matches_type(default, kind):
            problems.append((f"{where}.default", f"{default!r} is not a {kind}"))
        description = parameter.get("description", "")
        if description is not None and not isinstance(description, str):
            problems.append((f"{where}.description", "must be a string"))
    return problems


def value_matches_type(value: Any, kind: str) -> bool:
    """Whether ``value`` fits a parameter of type ``kind`` (``bool`` is not a number)."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list | tuple)
    if kind == "object":
        return isinstance(value, _MAPPINGS)
    return False


def _check_schema(bundle: Mapping[str, Any]) -> tuple[PromptSpec, ...]:
    unknown = sorted(set(bundle) - _KNOWN_KEYS, key=str)  # key=str: a Mapping may hold keys that are not strings
    if unknown:
        raise BundleSchemaError(str(unknown[0]), "is not a field of anvil.bundle/1")
    for key in _TOP_LEVEL_STRINGS:
        if not isinstance(bundle.get(key), str) or not bundle[key]:
            raise BundleSchemaError(key, "must be a non-empty string")
    for key in _OPTIONAL_STRINGS:
        if key in bundle and bundle[key] is not None and not isinstance(bundle[key], str):
            raise BundleSchemaError(key, "must be a string or null")
    for key in ("organisation", "project", "environment", "set"):
        if not SLUG_PATTERN.match(bundle[key]):
            raise BundleSchemaError(key, f"{bundle[key]!r} is not a slug")
    version = bundle.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleSchemaError("version", "must be a whole number of 1 or more")
    if bundle.get("approval") not in APPROVAL_STATES:
        raise BundleSchemaError("approval", f"must be one of {', '.join(APPROVAL_STATES)}")
    for key in ("content_digest", "digest"):
        value = bundle.get(key)
        if not isinstance(value, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
            raise BundleSchemaError(key, "must be 'sha256:' followed by 64 lowercase hex digits")
    prompts = bundle.get("prompts")
    if not isinstance(prompts, list):
        raise BundleSchemaError("prompts", "must be a list")
    specs: list[PromptSpec] = []
    append = specs.append
    previous_id = ""
    match_id = PROMPT_ID_PATTERN.match
    known: dict[tuple[Any, ...], Parameter] = {}
    for index, prompt in enumerate(prompts):
        # Fast path for a well-formed prompt (nearly always): the same checks as below without building a
        # path string or a list of problems per prompt. Anything unusual takes the full path, which finds
        # and names the first problem exactly as before.
        if (
            type(prompt) is dict
            and prompt.keys() == _PROMPT_KEYS
            and type(prompt_id := prompt["id"]) is str
            and len(prompt_id) <= MAX_PROMPT_ID_LENGTH
            and match_id(prompt_id)
            and prompt_id > previous_id
            and isinstance(prompt["template"], str)
            and isinstance(prompt["description"], str)
            and isinstance(prompt["metadata"], _MAPPINGS)
            and (parameters := _well_formed_parameters(prompt["parameters"], known)) is not None
        ):
            previous_id = prompt_id
            append(PromptSpec(prompt_id, prompt["template"], prompt["description"], parameters, prompt["metadata"]))
            continue
        where = f"prompts[{index}]"
        if not isinstance(prompt, _MAPPINGS):
            raise BundleSchemaError(where, f"must be an object, not {_json_type(prompt)}")
        extra = sorted(set(prompt) - {"id", "template", "description", "parameters", "metadata"}, key=str)
        if extra:
            raise BundleSchemaError(f"{where}.{extra[0]}", "is not a field of a prompt")
        prompt_id = prompt.get("id")
        if (
            not isinstance(prompt_id, str)
            or len(prompt_id) > MAX_PROMPT_ID_LENGTH
            or not PROMPT_ID_PATTERN.match(prompt_id)
        ):
            raise BundleSchemaError(f"{where}.id", f"{prompt_id!r} is not a prompt id (dotted lowercase words)")
        if prompt_id <= previous_id:
            raise BundleSchemaError(f"{where}.id", f"{prompt_id!r} is out of order or repeated (ids are sorted)")
        previous_id = prompt_id
        if not isinstance(prompt.get("template"), str):
            raise BundleSchemaError(f"{where}.template", "must be a string")
        if not isinstance(prompt.get("description"), str):
            raise BundleSchemaError(f"{where}.description", "must be a string")
        if not isinstance(prompt.get("metadata"), _MAPPINGS):
            raise BundleSchemaError(f"{where}.metadata", "must be an object")
        problems = parameter_problems(prompt.get("parameters"), f"{where}.parameters")
        if problems:
            raise BundleSchemaError(*problems[0])
        specs.append(
            PromptSpec(
                id=prompt_id,
                template=prompt["template"],
                description=prompt["description"],
                parameters=tuple(
                    Parameter(
                        name=p["name"],
                        type=p["type"],
                        required=p.get("required", False),
                        default=p.get("default"),
                        description=p.get("description") or "",
                    )
                    for p in prompt["parameters"]
                ),
                metadata=prompt["metadata"],
            )
        )
    return tuple(specs)


def _well_formed_parameters(parameters: Any, known: dict[tuple[Any, ...], Parameter]) -> tuple[Parameter, ...] | None:
    """The parameters of a prompt when every declaration is plainly valid (what ``parameter_problems`` would
    accept), else None so that the caller runs the full check for the exact problem.

    ``known`` holds declarations already checked in this bundle (most prompts share a few), so identical
    declarations share one immutable ``Parameter`` and are checked once.
    """
    if type(parameters) is not list:
        return None
    result = []
    seen = set()
    for parameter in parameters:
        if type(parameter) is not dict:
            return None
        name = parameter.get("name")
        kind = parameter.get("type")
        required = parameter.get("required", False)
        default = parameter.get("default")
        description = parameter.get("description", "")
        key = None
        if (
            type(name) is str
            and type(kind) is str
            and type(required) is bool
            and type(default) in _PLAIN_DEFAULTS
            and (description is None or type(description) is str)
        ):
            key = (name, kind, required, default, description)  # hashable, and equal only when identical
            cached = known.get(key)
            if cached is not None:
                if name in seen:
                    return None
                seen.add(name)
                result.append(cached)
                continue
        if (
            type(name) is not str
            or not PARAMETER_NAME_PATTERN.match(name)
            or name in seen
            or kind not in PARAMETER_TYPES
            or not isinstance(required, bool)
            or (default is not None and not value_matches_type(default, kind))
            or (description is not None and not isinstance(description, str))
        ):
            return None
        seen.add(name)
        declared = Parameter(name, kind, required, default, description or "")
        if key is not None:
            known[key] = declared
        result.append(declared)
    return tuple(result)


def _canonical_with(bundle: Mapping[str, Any], *, skip: str, prompts_json: bytes) -> bytes:
    """``canonical_json`` of ``bundle`` without key ``skip``, with the prompts' canonical JSON given."""
    parts = []
    for key in sorted(bundle):
        if key == skip:
            continue
        value = prompts_json if key == "prompts" else canonical_json(bundle[key])
        parts.append(canonical_json(key) + b":" + value)
    return b"{" + b",".join(parts) + b"}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a bundle")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


__all__ = [
    "FORMAT",
    "Bundle",
    "Parameter",
    "PromptSpec",
    "build_bundle",
    "canonical_json",
    "content_digest",
    "load_bundle",
    "load_stored_bundle",
    "normalise_prompt",
    "parameter_problems",
    "value_matches_type",
]
