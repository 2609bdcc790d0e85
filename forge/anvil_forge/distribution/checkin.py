"""The check-in a LIVE instance sends, parsed and bounded before anything is stored.

:func:`parse_checkin` turns a request body into a :class:`CheckIn` or raises :class:`CheckInError` whose
message names the field and the problem (the API answers it with 400).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from anvil_forge.distribution.models import InstanceMode

MAX_CHECKIN_BYTES = 256 * 1024
MAX_SETS = 500
MAX_USAGE_IDS = 5_000
MAX_VARIABLES_PER_ID = 200
MAX_VERSION = 2**31  # as the bundle endpoint's ?version=: a larger number is garbage, not a version
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A prompt id, optionally addressed with its set ("core:welcome.message").
_USAGE_ID = re.compile(r"^(?:[a-z0-9][a-z0-9_-]{0,63}:)?[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_KNOWN_KEYS = frozenset(
    {"instance_id", "name", "host", "process_count", "client_version", "mode", "pins", "versions", "usage"}
)


class CheckInError(ValueError):
    """The check-in is malformed; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class CheckIn:
    instance_id: str
    name: str
    host: str
    process_count: int
    client_version: str
    mode: str  # InstanceMode value
    pins: dict[str, int]
    versions: dict[str, int]
    usage: dict[str, list[str]]


def parse_checkin(body: bytes) -> CheckIn:
    """Parse and validate a check-in body (JSON object; see docs/protocol.md)."""
    if len(body) > MAX_CHECKIN_BYTES:
        raise CheckInError(f"check-in is {len(body)} bytes, more than the {MAX_CHECKIN_BYTES} allowed")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise CheckInError("check-in is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise CheckInError(f"check-in is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckInError("check-in must be a JSON object")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise CheckInError(f"{unknown[0]}: is not a check-in field")
    instance_id = data.get("instance_id")
    if not isinstance(instance_id, str) or not _INSTANCE_ID.match(instance_id):
        raise CheckInError("instance_id: must be 1-64 letters, digits or . _ : - (starting with a letter or digit)")
    name = _text(data, "name", 200, default=instance_id)
    host = _text(data, "host", 255, default="")
    client_version = _text(data, "client_version", 32, default="")
    process_count = data.get("process_count", 1)
    if not isinstance(process_count, int) or isinstance(process_count, bool) or not 1 <= process_count <= 100_000:
        raise CheckInError("process_count: must be a whole number from 1 to 100000")
    mode = data.get("mode", InstanceMode.ACCEPTING)
    if not isinstance(mode, str) or mode.upper() not in InstanceMode.values:
        raise CheckInError(f"mode: must be one of {', '.join(InstanceMode.values)}")
    return CheckIn(
        instance_id=instance_id,
        name=name or instance_id,
        host=host,
        process_count=process_count,
        client_version=client_version,
        mode=mode.upper(),
        pins=_versions(data, "pins"),
        versions=_versions(data, "versions"),
        usage=_usage(data),
    )


def _text(data: dict[str, Any], key: str, limit: int, *, default: str) -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise CheckInError(f"{key}: must be a string")
    if len(value) > limit:
        raise CheckInError(f"{key}: must be at most {limit} characters")
    if any(ord(ch) < 32 for ch in value):
        raise CheckInError(f"{key}: must not contain control characters")
    return value.strip()


def _versions(data: dict[str, Any], key: str) -> dict[str, int]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise CheckInError(f"{key}: must be an object of set slug to version number")
    if len(value) > MAX_SETS:
        raise CheckInError(f"{key}: at most {MAX_SETS} sets")
    result: dict[str, int] = {}
    for slug, number in value.items():
        if not _SLUG.match(slug):
            raise CheckInError(f"{key}.{slug[:64]}: is not a set slug")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_VERSION:
            raise CheckInError(f"{key}.{slug}: must be a version number from 1 to {MAX_VERSION}")
        result[slug] = number
    return result


def _usage(data: dict[str, Any]) -> dict[str, list[str]]:
    value = data.get("usage") or {}
    if not isinstance(value, dict):
        raise CheckInError("usage: must be an object of prompt id to the variable names used")
    if len(value) > MAX_USAGE_IDS:
        raise CheckInError(f"usage: at most {MAX_USAGE_IDS} prompt ids")
    result: dict[str, list[str]] = {}
    for prompt_id, variables in value.items():
        if len(prompt_id) > 265 or not _USAGE_ID.match(prompt_id):
            raise CheckInError(f"usage.{prompt_id[:100]}: is not a prompt id")
        if not isinstance(variables, list) or len(variables) > MAX_VARIABLES_PER_ID:
            raise CheckInError(f"usage.{prompt_id}: must be a list of at most {MAX_VARIABLES_PER_ID} variable names")
        for variable in variables:
            if not isinstance(variable, str) or not _VARIABLE.match(variable):
                raise CheckInError(f"usage.{prompt_id}: {str(variable)[:100]!r} is not a variable name")
        result[prompt_id] = sorted(set(variables))
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
