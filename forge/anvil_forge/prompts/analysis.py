"""Checking one prompt: its id, template, parameters and metadata, and previewing it.

The editor calls :func:`prompt_analysis` and :func:`prompt_preview` for live feedback; the services call
:func:`validate_prompt_fields` before anything is saved. The template rules are the client's own
(``anvil_client.templates``), so what the FORGE accepts is exactly what a LIVE instance can render.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anvil_client import MissingVariables, RenderLimitExceeded, TemplateError
from anvil_client.bundle import (
    MAX_PROMPT_ID_LENGTH,
    PROMPT_ID_PATTERN,
    canonical_json,
    normalise_parameter,
    parameter_problems,
    value_matches_type,
)
from anvil_client.templates import DEFAULT_LIMITS, check_template, compile_template, sandbox_environment
from anvil_forge.core.exceptions import ApplicationError

MAX_TEMPLATE_BYTES = 100 * 1024
MAX_DESCRIPTION_CHARS = 5_000
MAX_PARAMETERS = 100
MAX_METADATA_BYTES = 10 * 1024
MAX_PROMPTS_PER_SET = 1_000
MAX_PREVIEW_CHARS = 200_000
# A LIVE instance's limits, with a shorter time limit: a preview runs on every keystroke in a FORGE worker.
PREVIEW_LIMITS = dataclasses.replace(DEFAULT_LIMITS, max_seconds=1.0)

_SANDBOX = sandbox_environment()
# Names the sandbox provides itself (range, dict, namespace...): a template may use them undeclared.
_BUILTIN_NAMES = frozenset(_SANDBOX.globals)


@dataclass(frozen=True, slots=True)
class PromptAnalysis:
    """What the editor shows beside a template.

    ``variables``: the names the template reads (sorted); ``undeclared``: used but not declared as
    parameters; ``unused``: declared but not used; ``error`` / ``error_line``: the syntax error, if any
    (then the variable lists are empty).
    """

    variables: tuple[str, ...]
    undeclared: tuple[str, ...]
    unused: tuple[str, ...]
    error: str | None = None
    error_line: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def template_variables(template: str) -> tuple[str, ...]:
    """The variables ``template`` reads from its context, sorted; raises ``TemplateError`` on bad syntax."""
    info = check_template(template)
    return tuple(sorted(info.variables - _BUILTIN_NAMES))


def prompt_analysis(template: str, parameters: Any) -> PromptAnalysis:
    """Analyse a template against its parameter declarations. Never raises for bad input: it reports."""
    if not isinstance(template, str):
        return PromptAnalysis((), (), (), error="The template must be text.")
    if len(template.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        return PromptAnalysis((), (), (), error=f"The template is longer than {MAX_TEMPLATE_BYTES // 1024} KB.")
    try:
        variables = template_variables(template)
    except TemplateError as exc:
        return PromptAnalysis((), (), (), error=exc.message, error_line=exc.line)
    declared = _declared_names(parameters)
    return PromptAnalysis(
        variables=variables,
        undeclared=tuple(name for name in variables if name not in declared),
        unused=tuple(name for name in declared if name not in variables),
    )


def prompt_preview(template: str, parameters: Any, sample_values: Mapping[str, Any]) -> str:
    """Render ``template`` in the sandbox with ``sample_values``, as a LIVE instance would.

    Values typed as text are read as JSON for number, boolean, list and object parameters (``3``,
    ``true``, ``["a"]``). Parameters left out take their default; a missing required parameter, a value
    of the wrong type, a syntax error or a render error raises :class:`ApplicationError` saying which.
    """
    parameters = _with_default_type(parameters)
    problems = parameter_problems(parameters)
    if problems:
        path, problem = problems[0]
        raise ApplicationError(f"Parameter {path}: {problem}.")
    try:
        compiled = compile_template(template, limits=PREVIEW_LIMITS)
    except TemplateError as exc:
        if exc.line is None:
            raise ApplicationError(f"The template cannot be compiled: {exc.message}.") from exc
        raise ApplicationError(f"Template syntax error on line {exc.line}: {exc.message}.", {"line": exc.line}) from exc
    context: dict[str, Any] = {}
    missing: list[str] = []
    for parameter in (normalise_parameter(p) for p in parameters):
        name, kind = parameter["name"], parameter["type"]
        if name in sample_values and not (sample_values[name] == "" and kind != "string"):
            context[name] = _coerce(name, kind, sample_values[name])
        elif parameter["required"]:
            missing.append(name)
        else:
            context[name] = parameter["default"]
    if missing:
        raise ApplicationError(
            f"Missing required parameter{'s' if len(missing) > 1 else ''}: {', '.join(missing)}.",
            {"missing": missing},
        )
    for name, value in sample_values.items():  # undeclared variables the engineer gave values for
        context.setdefault(name, value)
    try:
        rendered = compiled.render(context)
    except MissingVariables as exc:
        raise ApplicationError(f"The template uses a value that was not given: {', '.join(exc.names)}.") from exc
    except RenderLimitExceeded as exc:
        raise ApplicationError(
            f"The template was stopped: {exc.message}. A LIVE instance would stop it too."
        ) from exc
    except TemplateError as exc:  # a template may fail in many ways (1/0, bad filter arguments): report it
        raise ApplicationError(f"The template failed to render: {exc.message}.") from exc
    if len(rendered) > MAX_PREVIEW_CHARS:
        raise ApplicationError(f"The preview is longer than {MAX_PREVIEW_CHARS} characters; check your loops.")
    return rendered


def validate_prompt_fields(
    *,
    key: str,
    template: str,
    description: str,
    parameters: Any,
    metadata: Any,
) -> list[dict[str, Any]]:
    """Refuse an invalid prompt with a message naming the problem; return the normalised parameters."""
    validate_prompt_id(key)
    if not isinstance(template, str):
        raise ApplicationError(f"The template of {key} must be text.")
    if len(template.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        raise ApplicationError(f"The template of {key} is longer than {MAX_TEMPLATE_BYTES // 1024} KB.")
    try:
        check_template(template)
    except TemplateError as exc:
        raise ApplicationError(
            f"Template syntax error in {key} on line {exc.line}: {exc.message}.",
            {"field": "template", "line": exc.line, "message": exc.message},
        ) from exc
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise ApplicationError(
            f"The description of {key} must be text of at most {MAX_DESCRIPTION_CHARS} characters."
        )
    if isinstance(parameters, list) and len(parameters) > MAX_PARAMETERS:
        raise ApplicationError(f"{key} declares more than {MAX_PARAMETERS} parameters.")
    parameters = _with_default_type(parameters)
    problems = parameter_problems(parameters)
    if problems:
        path, problem = problems[0]
        raise ApplicationError(f"{key}: {path} {problem}.", {"field": path, "problems": problems})
    if not isinstance(metadata, Mapping):
        raise ApplicationError(f"The metadata of {key} must be an object (for example {{\"model\": \"gpt-4o\"}}).")
    try:
        size = len(canonical_json(dict(metadata)))
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"The metadata of {key} is not plain JSON: {exc}.") from exc
    if size > MAX_METADATA_BYTES:
        raise ApplicationError(f"The metadata of {key} is larger than {MAX_METADATA_BYTES // 1024} KB.")
    return [normalise_parameter(p) for p in parameters]


def validate_prompt_id(key: Any) -> None:
    if not isinstance(key, str) or len(key) > MAX_PROMPT_ID_LENGTH or not PROMPT_ID_PATTERN.match(key):
        raise ApplicationError(
            f"{key!r} is not a valid prompt id: use lowercase words of letters, digits and _ joined by dots, "
            "each starting with a letter (for example welcome.message or errors.not_found).",
            {"field": "key"},
        )


def _with_default_type(parameters: Any) -> Any:
    """A declaration without a type is a string parameter (the bundle's own default)."""
    if not isinstance(parameters, list):
        return parameters
    return [{"type": "string", **p} if isinstance(p, Mapping) and "type" not in p else p for p in parameters]


def _declared_names(parameters: Any) -> list[str]:
    if not isinstance(parameters, list):
        return []
    return [p["name"] for p in parameters if isinstance(p, Mapping) and isinstance(p.get("name"), str)]


def _coerce(name: str, kind: str, value: Any) -> Any:
    if isinstance(value, str) and kind != "string":
        try:
            value = json.loads(value)
        except ValueError:
            raise ApplicationError(f"The value given for {name} is not a {kind}: {value!r}.") from None
    if not value_matches_type(value, kind):
        raise ApplicationError(f"The value given for {name} is not a {kind}: {value!r}.")
    return value
