"""What happened when the application used each prompt set version: counted here, sent with the check-ins.

Per set version this process served: renders, render errors by kind, fallbacks used, renders the render guard
answered with the previous version's text, and the outcomes the host reports (:meth:`Client.report`). The hot
path pays one counter increment: every compiled prompt has its own :func:`itertools.count` (``hits``), whose
``next()`` is one C call that no other thread can interleave. The rare events (errors, fallbacks, outcomes)
are counted under a lock, off the hot path.

A check-in sends the counts since the last check-in the FORGE accepted (``docs/protocol.md``, ``signals``):
:meth:`Signals.report` makes the report and remembers what it counted; :meth:`Signals.accepted` takes those
counts off, so a check-in that fails is reported again, summed with what came since.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from anvil_client._exceptions import AnvilError, InvalidVariable, MissingVariables, RenderLimitExceeded

ERROR_KINDS = ("missing_variables", "invalid_variable", "template_error", "render_limit")
MAX_VERSIONS_REPORTED = 50  # versions per check-in (the FORGE takes 20 per set, 500 sets)
MAX_RETIRED_VERSIONS = 10  # versions no longer served whose counters are kept until reported
MAX_OUTCOME_KINDS = 20  # distinct failure kinds per version; more are counted as "other"
MAX_PROBLEMS = 20  # (prompt, kind, detail) examples per version
MAX_PROBLEMS_REPORTED = 100  # examples per check-in, all versions together (the check-in stays well under 256 KiB)
MAX_DETAIL = 200
MAX_COUNT = 10**12
_KIND = re.compile(r"[^a-z0-9_.-]+")

Key = tuple[str, int]


def error_kind(exc: AnvilError) -> str:
    """The check-in's name for a render error."""
    if isinstance(exc, MissingVariables):
        return "missing_variables"
    if isinstance(exc, InvalidVariable):
        return "invalid_variable"
    if isinstance(exc, RenderLimitExceeded):
        return "render_limit"
    return "template_error"


def error_detail(exc: AnvilError) -> str:
    """What the FORGE shows of an error: the missing variables, the invalid one, the limit, the message."""
    if isinstance(exc, MissingVariables):
        detail = ", ".join(exc.names)
    elif isinstance(exc, InvalidVariable):
        detail = exc.name
    elif isinstance(exc, RenderLimitExceeded):
        detail = exc.limit
    else:
        detail = str(exc)
    return "".join(c for c in detail if c.isprintable())[:MAX_DETAIL]


def outcome_kind(kind: str) -> str:
    """A host's failure kind as the FORGE takes it: lowercase ``[a-z0-9_.-]``, 1-64 characters."""
    cleaned = _KIND.sub("_", str(kind).strip().lower()).strip("_")[:64]
    return cleaned or "unspecified"


def count_value(counter: Any) -> int:
    """The next value of an :func:`itertools.count` (how many times ``next()`` was called on it)."""
    return int(repr(counter)[6:-1])


class _Counts:
    __slots__ = ("errors", "failed", "fallbacks", "guarded", "ok", "problems")

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.fallbacks = 0
        self.guarded = 0
        self.ok = 0
        self.failed: dict[str, int] = {}
        # (prompt id, kind, detail) -> [count, guarded count]
        self.problems: dict[tuple[str, str, str], list[int]] = {}

    def empty(self) -> bool:
        return not (self.errors or self.fallbacks or self.guarded or self.ok or self.failed or self.problems)


class Signals:
    """The counters of one client in one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rare: dict[Key, _Counts] = {}
        # Set version -> the compiled prompts of it this process served (their ``hits``), until reported.
        self._tracked: dict[Key, list[Mapping[str, Any]]] = {}
        self._served: set[Key] = set()
        self._pending: tuple[int, dict[int, tuple[Any, int]], dict[Key, _Counts]] | None = None

    # -- counting (the rare events) ---------------------------------------------------------------------

    def _counts(self, key: Key) -> _Counts:
        counts = self._rare.get(key)
        if counts is None:
            counts = self._rare[key] = _Counts()
        return counts

    def render_failed(
        self, entry: Any, exc: AnvilError, *, guarded: bool, fallback: bool
    ) -> None:
        """A render of ``entry`` raised ``exc``; the guard served the previous text, or the fallback was used."""
        kind = error_kind(exc)
        detail = error_detail(exc)
        with self._lock:
            counts = self._counts((entry.set, entry.version))
            counts.errors[kind] = min(counts.errors.get(kind, 0) + 1, MAX_COUNT)
            if guarded:
                counts.guarded += 1
            if fallback:
                counts.fallbacks += 1
            problem = (entry.id, kind, detail)
            seen = counts.problems.get(problem)
            if seen is None and len(counts.problems) < MAX_PROBLEMS:
                seen = counts.problems[problem] = [0, 0]
            if seen is not None:
                seen[0] += 1
                seen[1] += int(guarded)

    def outcome(self, entry: Any, ok: bool, kind: str) -> None:
        with self._lock:
            counts = self._counts((entry.set, entry.version))
            if ok:
                counts.ok += 1
                return
            name = outcome_kind(kind)
            if name not in counts.failed and len(counts.failed) >= MAX_OUTCOME_KINDS:
                name = "other"
            counts.failed[name] = counts.failed.get(name, 0) + 1

    # -- what is served ---------------------------------------------------------------------------------

    def track(self, sets: Mapping[str, Any]) -> None:
        """The snapshot's sets (name -> SetEntry) are now served: their prompts' counters are reported."""
        with self._lock:
            self._served = set()
            for name, entry in sets.items():
                key = (name, entry.bundle.version)
                self._served.add(key)
                known = self._tracked.setdefault(key, [])
                if not any(prompts is entry.prompts for prompts in known):
                    known.append(entry.prompts)
            retired = [k for k in self._tracked if k not in self._served]  # oldest first
            for old in retired[: max(0, len(retired) - MAX_RETIRED_VERSIONS)]:
                self._tracked.pop(old)

    # -- reporting --------------------------------------------------------------------------------------

    def report(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The counts since the last accepted check-in, per set and version (empty: nothing to say)."""
        with self._lock:
            marks: dict[int, tuple[Any, int]] = {}
            renders: dict[Key, int] = {}
            for key, dicts in self._tracked.items():
                for prompts in dicts:
                    for prompt in prompts.values():
                        if id(prompt) in marks:
                            continue
                        hits = prompt.hits
                        value = count_value(hits)
                        marks[id(prompt)] = (prompt, value)
                        if value > prompt.hits_reported:
                            renders[key] = renders.get(key, 0) + value - prompt.hits_reported
            rare = {key: counts for key, counts in self._rare.items() if not counts.empty()}
            keys = sorted(set(renders) | set(rare), key=lambda k: (k not in self._served, k))[:MAX_VERSIONS_REPORTED]
            report: dict[str, dict[str, dict[str, Any]]] = {}
            sent: dict[Key, _Counts] = {}
            examples = MAX_PROBLEMS_REPORTED
            for key in keys:
                counts = rare.get(key) or _Counts()
                item: dict[str, Any] = {"renders": min(renders.get(key, 0), MAX_COUNT)}
                if counts.errors:
                    item["errors"] = dict(sorted(counts.errors.items()))
                if counts.fallbacks:
                    item["fallbacks"] = counts.fallbacks
                if counts.guarded:
                    item["guarded"] = counts.guarded
                if counts.ok or counts.failed:
                    item["outcomes"] = {"ok": counts.ok, "failed": dict(sorted(counts.failed.items()))}
                if counts.problems and examples > 0:  # past the budget, examples are dropped (counts are not)
                    item["problems"] = [
                        {"prompt": pid, "kind": kind, "detail": detail, "count": n, "guarded": g}
                        for (pid, kind, detail), (n, g) in sorted(counts.problems.items())[:examples]
                    ]
                    examples -= len(item["problems"])
                report.setdefault(key[0], {})[str(key[1])] = item
                sent[key] = _copy(counts)
            # Only the versions reported have their counters taken off when the FORGE accepts.
            reported = set(keys)
            kept_marks = {
                pid: mark for pid, mark in marks.items()
                if (mark[0].set, mark[0].version) in reported
            }
            self._pending = (id(report), kept_marks, sent)
            return report

    def accepted(self, report: Any) -> None:
        """The FORGE took ``report`` (what :meth:`report` returned last): its counts are not sent again."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None or pending[0] != id(report):
                return
            _, marks, sent = pending
            for prompt, value in marks.values():
                if value > prompt.hits_reported:
                    prompt.hits_reported = value
            for key, counts in sent.items():
                current = self._rare.get(key)
                if current is None:
                    continue
                _subtract(current, counts)
                if current.empty():
                    self._rare.pop(key, None)
            for key in [k for k in self._tracked if k not in self._served and k in sent]:
                self._tracked.pop(key)

    def forget(self) -> None:
        """In a forked child: what the parent counted is the parent's to report."""
        self._lock = threading.Lock()
        self._rare = {}
        self._pending = None
        for dicts in self._tracked.values():
            for prompts in dicts:
                for prompt in prompts.values():
                    prompt.hits_reported = count_value(prompt.hits)


def _copy(counts: _Counts) -> _Counts:
    copy = _Counts()
    copy.errors = dict(counts.errors)
    copy.fallbacks = counts.fallbacks
    copy.guarded = counts.guarded
    copy.ok = counts.ok
    copy.failed = dict(counts.failed)
    copy.problems = {key: list(value) for key, value in counts.problems.items()}
    return copy


def _subtract(current: _Counts, sent: _Counts) -> None:
    for kind, n in sent.errors.items():
        left = current.errors.get(kind, 0) - n
        if left > 0:
            current.errors[kind] = left
        else:
            current.errors.pop(kind, None)
    current.fallbacks = max(0, current.fallbacks - sent.fallbacks)
    current.guarded = max(0, current.guarded - sent.guarded)
    current.ok = max(0, current.ok - sent.ok)
    for kind, n in sent.failed.items():
        left = current.failed.get(kind, 0) - n
        if left > 0:
            current.failed[kind] = left
        else:
            current.failed.pop(kind, None)
    for problem, (n, g) in sent.problems.items():
        seen = current.problems.get(problem)
        if seen is None:
            continue
        seen[0] -= n
        seen[1] -= g
        if seen[0] <= 0:
            current.problems.pop(problem)
