"""The check-in a LIVE instance sends, parsed and bounded before anything is stored.

:func:`parse_checkin` turns a request body into a :class:`CheckIn` or raises :class:`CheckInError` whose
message names the field and the problem (the API answers it with 400).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from anvil_forge.distribution.models import InstanceMode

MAX_CHECKIN_BYTES = 256 * 1024
MAX_SETS = 500
MAX_USAGE_IDS = 5_000
MAX_VARIABLES_PER_ID = 200
MAX_VERSION = 2**31  # as the bundle endpoint's ?version=: a larger number is garbage, not a version
MAX_PROCESS_ID = 2**31 - 1
# ``applied``: the versions a process applied since its last check-in, per set; a process that applied more
# (a burst of publishes while it could not check in) reports the newest ones.
MAX_APPLIED_PER_SET = 20
DEFAULT_CHECKIN_INTERVAL = 60  # seconds; what a client that does not say is assumed to use
MIN_CHECKIN_INTERVAL = 1
MAX_CHECKIN_INTERVAL = 86_400
# A process not heard from for GONE_AFTER_INTERVALS of its check-in intervals (and at least GONE_AFTER_MIN_SECONDS)
# is gone: it tolerates two lost check-ins, and a fast-checking process is not dropped for a short hiccup.
GONE_AFTER_INTERVALS = 3
GONE_AFTER_MIN_SECONDS = 30
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A prompt id, optionally addressed with its set ("core:welcome.message").
_USAGE_ID = re.compile(r"^(?:[a-z0-9][a-z0-9_-]{0,63}:)?[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# ``signals``: what happened when the application used each version (docs/protocol.md, Signals).
SIGNAL_ERROR_KINDS = ("missing_variables", "invalid_variable", "template_error", "render_limit")
MAX_SIGNAL_VERSIONS = 100  # versions in one check-in, all sets together
MAX_SIGNAL_VERSIONS_PER_SET = 20
MAX_SIGNAL_COUNT = 10**12
MAX_OUTCOME_KINDS = 32
MAX_PROBLEMS = 20
MAX_PROBLEM_DETAIL = 200
_OUTCOME_KIND = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_KNOWN_KEYS = frozenset(
    {
        "instance_id",
        "process_id",
        "name",
        "host",
        "process_count",
        "client_version",
        "mode",
        "pins",
        "versions",
        "usage",
        "checkin_interval",
        "goodbye",
        "applied",
        "signals",
    }
)
_SIGNAL_KEYS = frozenset({"renders", "errors", "fallbacks", "guarded", "outcomes", "problems"})


@dataclass(frozen=True, slots=True)
class Problem:
    """A render error of one prompt as the client reported it: kind, detail (e.g. the missing variables),
    how many renders failed so, and how many of those the render guard answered with the previous text."""

    prompt: str
    kind: str
    detail: str
    count: int
    guarded: int


@dataclass(frozen=True, slots=True)
class VersionSignals:
    """The counts one process reports for one version since its last accepted check-in."""

    renders: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # kind (SIGNAL_ERROR_KINDS) -> count
    fallbacks: int = 0
    guarded: int = 0
    outcomes_ok: int = 0
    outcomes_failed: dict[str, int] = field(default_factory=dict)  # the host's kind -> count
    problems: tuple[Problem, ...] = ()

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def merge_signals(
    older: dict[str, dict[int, VersionSignals]], newer: dict[str, dict[int, VersionSignals]]
) -> dict[str, dict[int, VersionSignals]]:
    """Two check-ins' signals summed (the batch writer keeps one check-in per process)."""
    merged = {slug: dict(versions) for slug, versions in older.items()}
    for slug, versions in newer.items():
        into = merged.setdefault(slug, {})
        for number, item in versions.items():
            old = into.get(number)
            into[number] = item if old is None else _sum_signals(old, item)
    return merged


def _sum_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    total = dict(a)
    for key, n in b.items():
        total[key] = min(total.get(key, 0) + n, MAX_SIGNAL_COUNT)
    return total


def _sum_signals(a: VersionSignals, b: VersionSignals) -> VersionSignals:
    problems: dict[tuple[str, str, str], list[int]] = {}
    for p in (*a.problems, *b.problems):
        seen = problems.setdefault((p.prompt, p.kind, p.detail), [0, 0])
        seen[0] += p.count
        seen[1] += p.guarded
    return VersionSignals(
        renders=min(a.renders + b.renders, MAX_SIGNAL_COUNT),
        errors=_sum_counts(a.errors, b.errors),
        fallbacks=min(a.fallbacks + b.fallbacks, MAX_SIGNAL_COUNT),
        guarded=min(a.guarded + b.guarded, MAX_SIGNAL_COUNT),
        outcomes_ok=min(a.outcomes_ok + b.outcomes_ok, MAX_SIGNAL_COUNT),
        outcomes_failed=_sum_counts(a.outcomes_failed, b.outcomes_failed),
        problems=tuple(Problem(k[0], k[1], k[2], n, g) for k, (n, g) in list(problems.items())[: 2 * MAX_PROBLEMS]),
    )


class CheckInError(ValueError):
    """The check-in is malformed; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class CheckIn:
    """One process's check-in. ``instance_id`` names the application on its host, shared by all its processes;
    ``process_id`` is the process (its OS pid; 0 from clients that do not send one)."""

    instance_id: str
    name: str
    host: str
    process_count: int  # accepted from older clients; not used
    client_version: str
    mode: str  # InstanceMode value
    pins: dict[str, int]
    versions: dict[str, int]
    usage: dict[str, list[str]]
    process_id: int = 0
    checkin_interval: float = DEFAULT_CHECKIN_INTERVAL
    goodbye: bool = False
    # Set slug -> the version numbers this process applied since its last check-in (oldest first), so a release
    # superseded before the check-in lands is still acknowledged.
    applied: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Set slug -> version number -> what happened when the application used it (since the last accepted check-in).
    signals: dict[str, dict[int, VersionSignals]] = field(default_factory=dict)

    @property
    def gone_after_seconds(self) -> float:
        """How long after this check-in the process counts as gone unless it checks in again."""
        return max(GONE_AFTER_INTERVALS * self.checkin_interval, GONE_AFTER_MIN_SECONDS)


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
    if not _is_int(process_count) or not 1 <= process_count <= 100_000:
        raise CheckInError("process_count: must be a whole number from 1 to 100000")
    mode = data.get("mode", InstanceMode.ACCEPTING)
    if not isinstance(mode, str) or mode.upper() not in InstanceMode.values:
        raise CheckInError(f"mode: must be one of {', '.join(InstanceMode.values)}")
    # The optional fields of clients that know of processes; absent (or null) means what older clients meant.
    process_id = data.get("process_id")
    if process_id is None:
        process_id = 0
    elif not _is_int(process_id) or not 1 <= process_id <= MAX_PROCESS_ID:
        raise CheckInError(f"process_id: must be a whole number from 1 to {MAX_PROCESS_ID}, not {_shown(process_id)}")
    interval = data.get("checkin_interval")
    if interval is None:
        interval = DEFAULT_CHECKIN_INTERVAL
    elif (
        not isinstance(interval, int | float)
        or isinstance(interval, bool)
        or not (MIN_CHECKIN_INTERVAL <= interval <= MAX_CHECKIN_INTERVAL)
    ):
        raise CheckInError(
            f"checkin_interval: must be a number of seconds from {MIN_CHECKIN_INTERVAL} to {MAX_CHECKIN_INTERVAL}, "
            f"not {_shown(interval)}"
        )
    goodbye = data.get("goodbye")
    if goodbye is None:
        goodbye = False
    elif not isinstance(goodbye, bool):
        raise CheckInError(f"goodbye: must be true or false, not {_shown(goodbye)}")
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
        process_id=process_id,
        checkin_interval=float(interval),
        goodbye=goodbye,
        applied=_applied(data),
        signals=_signals(data),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """What a refused value is, for the error: its JSON type, and the number itself when it is one."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else "a larger number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


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


def _applied(data: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    value = data.get("applied")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckInError("applied: must be an object of set slug to version numbers")
    if len(value) > MAX_SETS:
        raise CheckInError(f"applied: at most {MAX_SETS} sets")
    result: dict[str, tuple[int, ...]] = {}
    for slug, numbers in value.items():
        if not _SLUG.match(slug):
            raise CheckInError(f"applied.{slug[:64]}: is not a set slug")
        if not isinstance(numbers, list) or len(numbers) > MAX_APPLIED_PER_SET:
            raise CheckInError(f"applied.{slug}: must be a list of at most {MAX_APPLIED_PER_SET} version numbers")
        for number in numbers:
            if not _is_int(number) or not 1 <= number <= MAX_VERSION:
                raise CheckInError(f"applied.{slug}: {_shown(number)} is not a version number from 1 to {MAX_VERSION}")
        if numbers:
            result[slug] = tuple(dict.fromkeys(numbers))
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


def _count(value: Any, where: str) -> int:
    if not _is_int(value) or not 0 <= value <= MAX_SIGNAL_COUNT:
        raise CheckInError(f"{where}: must be a whole number from 0 to {MAX_SIGNAL_COUNT}, not {_shown(value)}")
    return int(value)


def _counts(value: Any, where: str, *, kinds: tuple[str, ...] | None, limit: int) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckInError(f"{where}: must be an object of kind to count")
    if len(value) > limit:
        raise CheckInError(f"{where}: at most {limit} kinds")
    result: dict[str, int] = {}
    for kind, n in value.items():
        if kinds is not None and kind not in kinds:
            raise CheckInError(f"{where}.{kind[:64]}: is not one of {', '.join(kinds)}")
        if kinds is None and not _OUTCOME_KIND.match(kind):
            raise CheckInError(f"{where}.{kind[:64]}: a kind is 1-64 of a-z, 0-9, _ . - (starting with a-z or 0-9)")
        if count := _count(n, f"{where}.{kind}"):
            result[kind] = count
    return result


def _problems(value: Any, where: str) -> tuple[Problem, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_PROBLEMS:
        raise CheckInError(f"{where}: must be a list of at most {MAX_PROBLEMS} problems")
    problems = []
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(item, dict) or set(item) - {"prompt", "kind", "detail", "count", "guarded"}:
            raise CheckInError(f"{at}: must be an object with prompt, kind, detail, count, guarded")
        prompt = item.get("prompt")
        if not isinstance(prompt, str) or len(prompt) > 265 or not _USAGE_ID.match(prompt):
            raise CheckInError(f"{at}.prompt: is not a prompt id")
        kind = item.get("kind")
        if kind not in SIGNAL_ERROR_KINDS:
            raise CheckInError(f"{at}.kind: must be one of {', '.join(SIGNAL_ERROR_KINDS)}")
        detail = item.get("detail", "")
        if not isinstance(detail, str) or len(detail) > MAX_PROBLEM_DETAIL or any(ord(ch) < 32 for ch in detail):
            raise CheckInError(f"{at}.detail: must be a string of at most {MAX_PROBLEM_DETAIL} printable characters")
        count = _count(item.get("count", 0), f"{at}.count")
        guarded = _count(item.get("guarded", 0), f"{at}.guarded")
        if guarded > count:
            raise CheckInError(f"{at}.guarded: must not be more than count")
        problems.append(Problem(prompt, kind, detail, count, guarded))
    return tuple(problems)


def _signals(data: dict[str, Any]) -> dict[str, dict[int, VersionSignals]]:
    value = data.get("signals")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckInError("signals: must be an object of set slug to versions")
    if len(value) > MAX_SETS:
        raise CheckInError(f"signals: at most {MAX_SETS} sets")
    result: dict[str, dict[int, VersionSignals]] = {}
    total = 0
    for slug, versions in value.items():
        if not _SLUG.match(slug):
            raise CheckInError(f"signals.{slug[:64]}: is not a set slug")
        if not isinstance(versions, dict) or len(versions) > MAX_SIGNAL_VERSIONS_PER_SET:
            raise CheckInError(
                f"signals.{slug}: must be an object of version number to counts (at most "
                f"{MAX_SIGNAL_VERSIONS_PER_SET} versions)"
            )
        total += len(versions)
        if total > MAX_SIGNAL_VERSIONS:
            raise CheckInError(f"signals: at most {MAX_SIGNAL_VERSIONS} versions in all")
        for key, item in versions.items():
            where = f"signals.{slug}.{key[:12]}"
            if not (key.isascii() and key.isdigit()) or not 1 <= int(key) <= MAX_VERSION or key != str(int(key)):
                raise CheckInError(f"{where}: is not a version number from 1 to {MAX_VERSION}")
            if not isinstance(item, dict):
                raise CheckInError(f"{where}: must be an object of counts")
            unknown = sorted(set(item) - _SIGNAL_KEYS)
            if unknown:
                raise CheckInError(f"{where}.{unknown[0][:64]}: is not a signal")
            outcomes = item.get("outcomes")
            if outcomes is None:
                outcomes = {}
            if not isinstance(outcomes, dict) or set(outcomes) - {"ok", "failed"}:
                raise CheckInError(f"{where}.outcomes: must be an object with ok and failed")
            signals = VersionSignals(
                renders=_count(item.get("renders", 0), f"{where}.renders"),
                errors=_counts(item.get("errors"), f"{where}.errors", kinds=SIGNAL_ERROR_KINDS, limit=4),
                fallbacks=_count(item.get("fallbacks", 0), f"{where}.fallbacks"),
                guarded=_count(item.get("guarded", 0), f"{where}.guarded"),
                outcomes_ok=_count(outcomes.get("ok", 0), f"{where}.outcomes.ok"),
                outcomes_failed=_counts(
                    outcomes.get("failed"), f"{where}.outcomes.failed", kinds=None, limit=MAX_OUTCOME_KINDS
                ),
                problems=_problems(item.get("problems"), f"{where}.problems"),
            )
            result.setdefault(slug, {})[int(key)] = signals
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
