"""The editor's "Test cases" section: samples and their checks as form rows, kept exactly as typed.

Rows travel in the editor's form as ``case-N-name``, ``case-N-value-PARAM`` (a parameter's value: strings as
typed, other types as JSON, as in the preview) and ``case-N-check-M-kind`` / ``case-N-check-M-value``.
:func:`case_rows` reads them back as typed (to show again on any error), :func:`tests_from_rows` turns them
into samples for the services (which validate them, see ``prompts.samples``), and :func:`change_rows` adds
or removes a row without saving, like the parameters table's buttons.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.http import QueryDict

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts.samples import (
    CHECK_KINDS,
    MAX_CHECKS,
    MAX_SAMPLES,
    SampleResult,
    run_tests,
    validate_tests,
    value_text,
)

_CASE = re.compile(r"^case-(\d{1,4})-name$")
_CHECK = re.compile(r"^case-(\d{1,4})-check-(\d{1,4})-kind$")
# A few rows more than the limits, so the services name the limit rather than the form dropping rows.
MAX_CASE_ROWS = MAX_SAMPLES + 5
MAX_CHECK_ROWS = MAX_CHECKS + 5


def rows_from_tests(tests: list[dict[str, Any]], parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Saved samples as form rows (values as text, by parameter)."""
    kinds = {p["name"]: p.get("type", "string") for p in parameters}
    return [
        {
            "name": test["name"],
            "values": {name: value_text(value, kinds.get(name, "string")) for name, value in test["values"].items()},
            "checks": [
                {"kind": c["kind"], "value": "" if c.get("value") is None else str(c["value"])} for c in test["checks"]
            ],
        }
        for test in tests
    ]


def case_rows(data: QueryDict) -> list[dict[str, Any]]:
    """The test case rows as typed, in order."""
    indexes = sorted({int(m.group(1)) for key in data if (m := _CASE.match(key))})[:MAX_CASE_ROWS]
    rows = []
    for index in indexes:
        prefix = f"case-{index}-"
        values = {
            key[len(prefix + "value-") :]: value
            for key, value in data.items()
            if key.startswith(prefix + "value-")
        }
        check_indexes = sorted(
            {int(m.group(2)) for key in data if (m := _CHECK.match(key)) and int(m.group(1)) == index}
        )[:MAX_CHECK_ROWS]
        checks = [
            {"kind": data.get(f"{prefix}check-{j}-kind", ""), "value": data.get(f"{prefix}check-{j}-value", "")}
            for j in check_indexes
        ]
        rows.append({"name": data.get(prefix + "name", ""), "values": values, "checks": checks})
    return rows


def first_sample_values(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The preview's starting values: the first test case's, when there is one."""
    return dict(rows[0]["values"]) if rows else {}


def tests_from_rows(rows: list[dict[str, Any]], parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples from rows, typed by ``parameters``; ApplicationError names the test case and the field.

    Only the declared parameters' values are read (a renamed parameter's old field is dropped). An empty
    field gives no value (the default applies), except for a required text parameter, where it is "".
    A check row without a kind is ignored.
    """
    tests = []
    for number, row in enumerate(rows, start=1):
        name = row["name"].strip()
        where = f"Test case {name!r}" if name else f"Test case {number}"
        values: dict[str, Any] = {}
        for parameter in parameters:
            pname, kind = parameter["name"], parameter.get("type", "string")
            text = row["values"].get(pname, "")
            if text == "" and not (kind == "string" and parameter.get("required")):
                continue
            if kind == "string":
                values[pname] = text
                continue
            try:
                values[pname] = json.loads(text)
            except ValueError:
                raise ApplicationError(
                    f"{where}: the value of {pname} is not a {kind}: {text!r}"
                    + (" (write true or false)." if kind == "boolean" else ' (write it as JSON, e.g. 3, ["a"]).')
                ) from None
        checks = []
        for check_number, check in enumerate(row["checks"], start=1):
            kind = check["kind"]
            if not kind:
                continue
            text = check["value"]
            if kind == "max_chars":
                stripped = text.strip()
                if not (stripped.isascii() and stripped.isdecimal() and len(stripped) <= 9):
                    raise ApplicationError(
                        f"{where}, check {check_number}: at most N characters needs a whole number, not {text!r}."
                    )
                checks.append({"kind": kind, "value": int(stripped)})
            elif kind == "json":
                checks.append({"kind": kind})
            else:
                checks.append({"kind": kind, "value": text})
        tests.append({"name": name, "values": values, "checks": checks})
    return tests


def change_rows(rows: list[dict[str, Any]], data: QueryDict) -> list[dict[str, Any]] | None:
    """Rows after an add / remove button (``None``: no such button was pressed)."""
    if data.get("add_case"):
        return [*rows, {"name": f"case {len(rows) + 1}", "values": first_sample_values(rows),
                        "checks": [{"kind": "contains", "value": ""}]}]
    if (remove := data.get("remove_case")) is not None:
        return [row for index, row in enumerate(rows) if str(index) != remove]
    if (add := data.get("add_check")) is not None:
        return [
            {**row, "checks": [*row["checks"], {"kind": "contains", "value": ""}]} if str(index) == add else row
            for index, row in enumerate(rows)
        ]
    if (remove := data.get("remove_check")) is not None:
        case, _, check = remove.partition("-")
        return [
            {**row, "checks": [c for j, c in enumerate(row["checks"]) if str(j) != check]}
            if str(index) == case else row
            for index, row in enumerate(rows)
        ]
    return None


def case_results(
    *, key: str, template: str, parameters: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> tuple[list[SampleResult | None], str]:
    """Each row's result (in row order), or ``([], message)`` when the rows are not valid samples yet."""
    if not rows:
        return [], ""
    try:
        tests = validate_tests(key=key, tests=tests_from_rows(rows, parameters), parameters=parameters)
    except ApplicationError as exc:
        return [], exc.message
    return list(run_tests(template=template, parameters=parameters, tests=tests)), ""


def check_kinds() -> list[tuple[str, str]]:
    return list(CHECK_KINDS.items())
