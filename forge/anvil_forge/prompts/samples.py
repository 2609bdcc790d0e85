"""Test cases on prompts: named sample inputs with checks on the rendered text.

A prompt keeps a list of samples (``Prompt.tests``)::

    [{"name": "ada", "values": {"name": "Ada"},
      "checks": [{"kind": "contains", "value": "Ada"}, {"kind": "max_chars", "value": 200}, {"kind": "json"}]}]

Check kinds: ``contains`` / ``not_contains`` (text), ``regex`` (a Python regular expression, searched),
``max_chars`` (a positive integer), ``json`` (the rendered text is valid JSON; no value).

:func:`validate_tests` refuses bad samples with a message naming the prompt, the sample and the check;
:func:`run_tests` renders every sample exactly as the editor's preview does (same sandbox, same limits) and
runs its checks. Regular expressions run in a separate, short-lived process with a time limit: Python's
``re`` holds the GIL while it backtracks, and one catastrophic pattern would otherwise freeze the FORGE
process (and every LIVE stream it serves).

Samples travel with a prompt in versions (``snapshot["tests"]``, beside ``snapshot["prompts"]``, so bundles
and digests never see them), in exports and imports (front matter ``tests``), never in LIVE bundles.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_client.bundle import canonical_json, normalise_parameter, value_matches_type
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts.analysis import prompt_preview

CHECK_KINDS: dict[str, str] = {
    "contains": "contains",
    "not_contains": "does not contain",
    "regex": "matches the regular expression",
    "max_chars": "is at most N characters",
    "json": "is valid JSON",
}
TEXT_KINDS = frozenset({"contains", "not_contains"})
MAX_SAMPLES = 20
MAX_CHECKS = 20
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 1_000
MAX_REGEX_CHARS = 500
MAX_CHARS_LIMIT = 10_000_000
MAX_TESTS_BYTES = 64 * 1024  # all samples of one prompt, as canonical JSON
REGEX_SECONDS = 2.0  # for all the regular expressions of one run together
NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _.\-]*[A-Za-z0-9_.\-])?$")


def _refuse(where: str, message: str, **extra: Any) -> ApplicationError:
    return ApplicationError(f"{where}: {message}.", {"field": "tests", **extra})


def validate_tests(*, key: str, tests: Any, parameters: Any) -> list[dict[str, Any]]:
    """The samples of prompt ``key`` normalised, or :class:`ApplicationError` naming the sample and the check.

    ``parameters`` are the prompt's (already valid) declarations: every value must be for a declared
    parameter and of its type, and every required parameter needs a value (as in the preview).
    """
    if tests is None:
        return []
    if not isinstance(tests, list | tuple):
        raise _refuse(f"{key}", "the test cases must be a list of samples")
    if len(tests) > MAX_SAMPLES:
        raise _refuse(f"{key}", f"at most {MAX_SAMPLES} test cases per prompt")
    declared = {p["name"]: normalise_parameter(p) for p in parameters or [] if isinstance(p, Mapping)}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, sample in enumerate(tests, start=1):
        if not isinstance(sample, Mapping):
            raise _refuse(f"{key}, test case {index}", "must be a mapping of name, values and checks")
        unknown = sorted(str(k) for k in sample if k not in ("name", "values", "checks"))
        if unknown:
            raise _refuse(f"{key}, test case {index}", f"unknown key {unknown[0]!r} (use name, values, checks)")
        name = sample.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _refuse(f"{key}, test case {index}", "give it a name", sample=index)
        name = name.strip()
        where = f"{key}, test case {name!r}"
        if len(name) > MAX_NAME_CHARS or not NAME_PATTERN.match(name):
            raise _refuse(
                where,
                f"a name is at most {MAX_NAME_CHARS} letters, digits, spaces, _ . or -, starting with a letter or "
                "digit",
                sample=index,
            )
        if name in seen:
            raise _refuse(where, "two test cases have this name", sample=index)
        seen.add(name)
        values = _values(where, sample.get("values"), declared, index)
        checks = _checks(where, sample.get("checks"), index)
        out.append({"name": name, "values": values, "checks": checks})
    try:
        size = len(canonical_json(out))
    except (TypeError, ValueError) as exc:
        raise _refuse(f"{key}", f"the test cases hold a value that is not plain JSON: {exc}") from None
    if size > MAX_TESTS_BYTES:
        raise _refuse(f"{key}", f"the test cases are larger than {MAX_TESTS_BYTES // 1024} KB")
    return out


def _values(where: str, values: Any, declared: Mapping[str, dict[str, Any]], index: int) -> dict[str, Any]:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise _refuse(where, "values must map parameter names to values", sample=index)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in declared:
            known = ", ".join(declared) or "none are declared"
            raise _refuse(where, f"{name!s} is not a parameter of the prompt (parameters: {known})", sample=index)
        kind = declared[name]["type"]
        if not value_matches_type(value, kind):
            raise _refuse(where, f"the value of {name} must be a {kind}, not {value!r}", sample=index)
        out[name] = list(value) if isinstance(value, tuple) else value
    missing = [n for n, p in declared.items() if p["required"] and n not in out]
    if missing:
        raise _refuse(where, f"give a value for the required parameter{'s' if len(missing) > 1 else ''} "
                      f"{', '.join(missing)}", sample=index)
    return out


def _checks(where: str, checks: Any, index: int) -> list[dict[str, Any]]:
    if checks is None:
        return []
    if not isinstance(checks, list | tuple):
        raise _refuse(where, "checks must be a list", sample=index)
    if len(checks) > MAX_CHECKS:
        raise _refuse(where, f"at most {MAX_CHECKS} checks per test case", sample=index)
    out = []
    for number, check in enumerate(checks, start=1):
        at = f"{where}, check {number}"
        if not isinstance(check, Mapping) or not isinstance(check.get("kind"), str):
            raise _refuse(at, f"give a kind ({', '.join(CHECK_KINDS)})", sample=index, check=number)
        kind = check["kind"]
        if kind not in CHECK_KINDS:
            raise _refuse(at, f"unknown kind {kind!r} (use {', '.join(CHECK_KINDS)})", sample=index, check=number)
        unknown = sorted(str(k) for k in check if k not in ("kind", "value"))
        if unknown:
            raise _refuse(at, f"unknown key {unknown[0]!r} (use kind and value)", sample=index, check=number)
        value = check.get("value")
        if kind in TEXT_KINDS:
            if not isinstance(value, str) or not value:
                raise _refuse(at, f"{kind} needs the text to look for", sample=index, check=number)
            if len(value) > MAX_TEXT_CHARS:
                raise _refuse(at, f"the text is longer than {MAX_TEXT_CHARS} characters", sample=index, check=number)
            out.append({"kind": kind, "value": value})
        elif kind == "regex":
            if not isinstance(value, str) or not value:
                raise _refuse(at, "regex needs a regular expression", sample=index, check=number)
            if len(value) > MAX_REGEX_CHARS:
                raise _refuse(at, f"the regular expression is longer than {MAX_REGEX_CHARS} characters",
                              sample=index, check=number)
            try:
                re.compile(value)
            except (re.error, RecursionError, OverflowError) as exc:
                raise _refuse(at, f"the regular expression does not compile: {exc}", sample=index,
                              check=number) from None
            out.append({"kind": kind, "value": value})
        elif kind == "max_chars":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHARS_LIMIT:
                raise _refuse(at, f"max_chars needs a whole number from 1 to {MAX_CHARS_LIMIT}, not {value!r}",
                              sample=index, check=number)
            out.append({"kind": kind, "value": value})
        else:  # json
            if value not in (None, True):
                raise _refuse(at, "json takes no value", sample=index, check=number)
            out.append({"kind": kind})
    return out


# Running ---------------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    kind: str
    value: Any
    ok: bool
    detail: str = ""

    @property
    def label(self) -> str:
        return check_label({"kind": self.kind, "value": self.value})


@dataclass
class SampleResult:
    name: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""  # the sample did not render: every check counts as failed
    rendered: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "error": self.error,
            "checks": [{"kind": c.kind, "value": c.value, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def check_label(check: Mapping[str, Any]) -> str:
    kind, value = check.get("kind"), check.get("value")
    if kind == "contains":
        return f"contains {value!r}"
    if kind == "not_contains":
        return f"does not contain {value!r}"
    if kind == "regex":
        return f"matches /{value}/"
    if kind == "max_chars":
        return f"at most {value} characters"
    return "is valid JSON"


def run_tests(*, template: str, parameters: Any, tests: Iterable[Mapping[str, Any]]) -> list[SampleResult]:
    """Render each sample as the preview does and run its checks. Never raises for a failing sample."""
    results: list[SampleResult] = []
    regex_jobs: list[tuple[CheckResult, str, str]] = []
    for sample in tests:
        result = SampleResult(name=sample["name"])
        results.append(result)
        try:
            rendered = prompt_preview(template, parameters, dict(sample.get("values") or {}))
        except ApplicationError as exc:
            result.error = exc.message
            result.checks = [
                CheckResult(c["kind"], c.get("value"), False, "not run: the sample did not render")
                for c in sample.get("checks") or []
            ]
            continue
        result.rendered = rendered
        for check in sample.get("checks") or []:
            kind, value = check["kind"], check.get("value")
            if kind == "contains":
                result.checks.append(CheckResult(kind, value, value in rendered, "" if value in rendered else
                                                 "not found in the rendered text"))
            elif kind == "not_contains":
                found = value in rendered
                result.checks.append(CheckResult(kind, value, not found, "found in the rendered text" if found else ""))
            elif kind == "max_chars":
                ok = len(rendered) <= value
                result.checks.append(CheckResult(kind, value, ok, "" if ok else f"{len(rendered)} characters"))
            elif kind == "json":
                try:
                    json.loads(rendered)
                except ValueError as exc:
                    result.checks.append(CheckResult(kind, None, False, f"not JSON: {exc}"))
                else:
                    result.checks.append(CheckResult(kind, None, True))
            else:
                check_result = CheckResult(kind, value, False, "not run")
                result.checks.append(check_result)
                regex_jobs.append((check_result, value, rendered))
    if regex_jobs:
        outcomes = regex_search_many([(pattern, text) for _, pattern, text in regex_jobs])
        for (check_result, _, _), outcome in zip(regex_jobs, outcomes, strict=True):
            check_result.ok = outcome is True
            check_result.detail = {True: "", False: "no match in the rendered text"}.get(
                outcome, str(outcome)  # type: ignore[arg-type]
            )
    return results


_REGEX_CHILD = r"""
import json, re, sys
for line in sys.stdin:
    pattern, text = json.loads(line)
    try:
        found = re.search(pattern, text) is not None
    except Exception as exc:
        found = "error: " + str(exc)
    sys.stdout.write(json.dumps(found) + "\n")
    sys.stdout.flush()
"""


def regex_search_many(jobs: list[tuple[str, str]], *, seconds: float = REGEX_SECONDS) -> list[bool | str]:
    """``re.search(pattern, text) is not None`` for each job, in a child process with a time limit.

    A job that is still running at the limit gives ``"timed out after N s: ..."``, the ones after it
    ``"not run: ..."``: a runaway pattern costs this one call its time limit, never the FORGE process.
    """
    if not jobs:
        return []
    payload = "".join(json.dumps([pattern, text]) + "\n" for pattern, text in jobs)
    try:
        completed = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _REGEX_CHILD],
            input=payload,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=seconds,
            check=False,
        )
        lines = completed.stdout.splitlines()
        timed_out = False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        lines = (out.decode("utf-8", "replace") if isinstance(out, bytes) else out).splitlines()
        timed_out = True
    outcomes: list[bool | str] = []
    for index in range(len(jobs)):
        if index < len(lines):
            try:
                value = json.loads(lines[index])
            except ValueError:
                value = "error: the check's process gave no answer"
            outcomes.append(value if isinstance(value, bool) else str(value))
        elif timed_out and index == len(lines):
            outcomes.append(f"timed out after {seconds:g} s: simplify the regular expression")
        else:
            outcomes.append("not run: an earlier regular expression took too long" if timed_out else
                            "error: the check's process stopped")
    return outcomes


# Versions --------------------------------------------------------------------------------------------------


def snapshot_tests(prompts: Iterable[tuple[str, list[dict[str, Any]]]]) -> dict[str, list[dict[str, Any]]]:
    """``{prompt id: samples}`` for the prompts that have samples (what a version snapshot keeps)."""
    return {key: list(tests) for key, tests in prompts if tests}


def results_for(prompts: Iterable[Mapping[str, Any]], tests: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every sample of every prompt run: ``{"passed": n, "failed": n, "prompts": {id: [sample result]}}``.

    ``prompts`` are normalised prompts (as snapshots keep them); prompts without samples are left out.
    """
    by_id = {p["id"]: p for p in prompts}
    out: dict[str, list[dict[str, Any]]] = {}
    passed = failed = 0
    for key in sorted(tests):
        prompt = by_id.get(key)
        if prompt is None or not tests[key]:
            continue
        results = run_tests(template=prompt["template"], parameters=prompt["parameters"], tests=tests[key])
        out[key] = [r.to_json() for r in results]
        for result in results:
            passed, failed = (passed + 1, failed) if result.ok else (passed, failed + 1)
    return {"passed": passed, "failed": failed, "prompts": out}


def failing_samples(results: Mapping[str, Any] | None) -> list[str]:
    """``["prompt.id: sample", ...]`` for every failing sample of recorded results (none: ``[]``)."""
    if not results:
        return []
    return [
        f"{key}: {sample['name']}"
        for key, samples in sorted((results.get("prompts") or {}).items())
        for sample in samples
        if not sample.get("ok")
    ]


def value_text(value: Any, kind: str) -> str:
    """How a sample value is shown in a form field: strings as they are, everything else as JSON."""
    if value is None:
        return ""
    if kind == "string" and isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
