"""Differences between two prompt set versions, for the side-by-side diff and the publish confirmation."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

CONTEXT_LINES = 3


@dataclass(frozen=True)
class Line:
    """One row of a side-by-side template diff. ``kind``: equal, delete, insert, replace or gap."""

    kind: str
    old_number: int | None = None
    old_text: str = ""
    new_number: int | None = None
    new_text: str = ""

    @cached_property
    def marked(self) -> tuple[SafeString, SafeString]:
        """Both sides as HTML with the changed words of a replaced line in ``<mark>``."""
        if self.kind == "replace" and self.old_number is not None and self.new_number is not None:
            return word_marks(self.old_text, self.new_text)
        return mark_safe(escape(self.old_text)), mark_safe(escape(self.new_text))  # noqa: S308 - escaped

    @property
    def old_html(self) -> SafeString:
        return self.marked[0]

    @property
    def new_html(self) -> SafeString:
        return self.marked[1]


@dataclass
class PromptChange:
    id: str
    kind: str  # added, removed, changed
    lines: list[Line] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)  # readable parameter changes
    other: list[str] = field(default_factory=list)  # description, metadata


@dataclass
class VersionDiff:
    changes: list[PromptChange]
    unchanged: int

    @property
    def added(self) -> list[PromptChange]:
        return [c for c in self.changes if c.kind == "added"]

    @property
    def removed(self) -> list[PromptChange]:
        return [c for c in self.changes if c.kind == "removed"]

    @property
    def changed(self) -> list[PromptChange]:
        return [c for c in self.changes if c.kind == "changed"]

    @property
    def empty(self) -> bool:
        return not self.changes


def _prompts(snapshot: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The prompts by id, each with its test cases when it has any (kept beside the prompts in a snapshot)."""
    tests = (snapshot or {}).get("tests") or {}
    return {p["id"]: {**p, "tests": tests[p["id"]]} if tests.get(p["id"]) else p
            for p in (snapshot or {}).get("prompts", [])}


def snapshot_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> VersionDiff:
    """What changed from snapshot ``old`` (None: nothing before) to ``new``, prompt by prompt, ids sorted."""
    before, after = _prompts(old), _prompts(new)
    changes: list[PromptChange] = []
    unchanged = 0
    for prompt_id in sorted(before.keys() | after.keys()):
        a, b = before.get(prompt_id), after.get(prompt_id)
        if a is None:
            changes.append(PromptChange(prompt_id, "added", lines=template_lines("", b["template"])))
        elif b is None:
            changes.append(PromptChange(prompt_id, "removed", lines=template_lines(a["template"], "")))
        elif a == b:
            unchanged += 1
        else:
            change = PromptChange(prompt_id, "changed")
            if a.get("template") != b.get("template"):
                change.lines = template_lines(a.get("template", ""), b.get("template", ""))
            change.parameters = parameter_changes(a.get("parameters", []), b.get("parameters", []))
            if a.get("description", "") != b.get("description", ""):
                change.other.append(f"description: {a.get('description', '')!r} → {b.get('description', '')!r}")
            if a.get("metadata", {}) != b.get("metadata", {}):
                change.other.append(f"metadata: {_json(a.get('metadata', {}))} → {_json(b.get('metadata', {}))}")
            if a.get("tests", []) != b.get("tests", []):
                change.other.append(f"test cases: {_test_names(a)} → {_test_names(b)}")
            changes.append(change)
    return VersionDiff(changes=changes, unchanged=unchanged)


def _test_names(prompt: dict[str, Any]) -> str:
    return ", ".join(t["name"] for t in prompt.get("tests", [])) or "none"


def template_lines(old: str, new: str, context: int = CONTEXT_LINES) -> list[Line]:
    """A side-by-side line diff; long runs of equal lines are folded into one ``gap`` row."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[Line] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            count = i2 - i1
            if count > 2 * context + 1:
                head = context if rows else 0
                tail = context if i2 < len(a) or j2 < len(b) else 0
                rows += [Line("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]) for k in range(head)]
                rows.append(Line("gap", old_text=f"{count - head - tail} unchanged lines"))
                rows += [Line("equal", i2 - k, a[i2 - k - 1], j2 - k, b[j2 - k - 1]) for k in reversed(range(tail))]
            else:
                rows += [Line("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]) for k in range(count)]
        elif tag == "delete":
            rows += [Line("delete", old_number=i + 1, old_text=a[i]) for i in range(i1, i2)]
        elif tag == "insert":
            rows += [Line("insert", new_number=j + 1, new_text=b[j]) for j in range(j1, j2)]
        else:
            for k in range(max(i2 - i1, j2 - j1)):
                i, j = i1 + k, j1 + k
                rows.append(
                    Line(
                        "replace",
                        i + 1 if i < i2 else None,
                        a[i] if i < i2 else "",
                        j + 1 if j < j2 else None,
                        b[j] if j < j2 else "",
                    )
                )
    return rows


def parameter_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Readable parameter changes: added, removed, and each changed field."""
    before = {p["name"]: p for p in old}
    after = {p["name"]: p for p in new}
    out: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a is None:
            out.append(f"added {name} ({_describe(b)})")
        elif b is None:
            out.append(f"removed {name}")
        elif a != b:
            fields = [
                f"{key}: {_json(a.get(key))} → {_json(b.get(key))}"
                for key in ("type", "required", "default", "description")
                if a.get(key) != b.get(key)
            ]
            out.append(f"{name}: " + "; ".join(fields))
    return out


def _describe(parameter: dict[str, Any]) -> str:
    words = [parameter.get("type", "string"), "required" if parameter.get("required") else "optional"]
    if parameter.get("default") is not None:
        words.append(f"default {_json(parameter['default'])}")
    return ", ".join(words)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


_WORDS = re.compile(r"\s+|\w+|[^\w\s]")


def word_marks(old: str, new: str) -> tuple[SafeString, SafeString]:
    """Escape both lines and wrap the words that differ in ``<mark>`` (deleted on the left, inserted right)."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        old_part, new_part = escape("".join(a[i1:i2])), escape("".join(b[j1:j2]))
        if tag == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f'<mark class="del">{old_part}</mark>')
        if new_part:
            right.append(f'<mark class="add">{new_part}</mark>')
    return mark_safe("".join(left)), mark_safe("".join(right))  # noqa: S308 - every part was escaped
