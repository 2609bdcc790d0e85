"""Reading the editor's form: the parameters table and the sample values, kept exactly as typed.

The parameter rows travel as ``param-N-name``, ``param-N-type``, ``param-N-required``, ``param-N-default``
and ``param-N-description``. :func:`parameter_rows` returns them as typed (to show again on any error);
:func:`parameters_from_rows` turns them into declarations for the services, raising ApplicationError
with the row's name when a default is not valid for its type.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.http import QueryDict

from anvil_client.bundle import PARAMETER_TYPES
from anvil_forge.core.exceptions import ApplicationError

_ROW = re.compile(r"^param-(\d+)-name$")
MAX_ROWS = 200


def parameter_rows(data: QueryDict) -> list[dict[str, Any]]:
    """The rows of the parameters table as typed, in order, skipping rows marked for removal."""
    indexes = sorted({int(m.group(1)) for key in data if (m := _ROW.match(key))})[:MAX_ROWS]
    rows = []
    for index in indexes:
        prefix = f"param-{index}-"
        if data.get(prefix + "remove"):
            continue
        rows.append(
            {
                "name": data.get(prefix + "name", "").strip(),
                "type": data.get(prefix + "type", "string"),
                "required": bool(data.get(prefix + "required")),
                "default": data.get(prefix + "default", ""),
                "description": data.get(prefix + "description", ""),
            }
        )
    return rows


def rows_from_parameters(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Saved declarations as table rows (defaults of non-string types shown as JSON)."""
    rows = []
    for parameter in parameters:
        default = parameter.get("default")
        kind = parameter.get("type", "string")
        if default is None:
            text = ""
        elif kind == "string":
            text = default
        else:
            text = json.dumps(default)
        rows.append(
            {
                "name": parameter.get("name", ""),
                "type": kind,
                "required": bool(parameter.get("required")),
                "default": text,
                "description": parameter.get("description", "") or "",
            }
        )
    return rows


def parameters_from_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Declarations from table rows; rows without a name are ignored. Defaults of non-strings are JSON."""
    parameters = []
    for row in rows:
        if not row["name"]:
            continue
        kind = row["type"] if row["type"] in PARAMETER_TYPES else "string"
        default: Any = None
        if row["default"] != "":
            if kind == "string":
                default = row["default"]
            else:
                try:
                    default = json.loads(row["default"])
                except ValueError:
                    raise ApplicationError(
                        f"The default of {row['name']} is not a valid {kind}: {row['default']!r}"
                        + (" (write true or false)." if kind == "boolean" else ' (write it as JSON, e.g. 3, ["a"]).')
                    ) from None
        parameters.append(
            {
                "name": row["name"],
                "type": kind,
                "required": row["required"],
                "default": default,
                "description": row["description"],
            }
        )
    return parameters


def revision_field(data: QueryDict, *, required: bool = False) -> int | None:
    """The ``base_revision`` a form was rendered with: ``None`` when absent or empty (unless ``required``),
    ApplicationError naming the field when it is anything but a revision number."""
    text = data.get("base_revision", "").strip()
    if not text and not required:
        return None
    # isdecimal() before int(): int() also takes "+1", "1_0" and " 1", and refuses over 4300 digits with
    # ValueError; a revision is plain ASCII digits and fits the database's bigint.
    if not (text.isascii() and text.isdecimal() and len(text) <= 18 and int(text) >= 1):
        raise ApplicationError(
            "The form's base_revision is not a revision number: reload the page and try again.",
            {"field": "base_revision"},
        )
    return int(text)


def sample_values(data: QueryDict) -> dict[str, str]:
    """The preview's sample values (``sample-NAME``), as typed."""
    return {key[len("sample-") :]: value for key, value in data.items() if key.startswith("sample-")}
