"""Template checks shared by the FORGE (on save and preview) and the client (at load and render).

Templates are Jinja2 run in a sandboxed environment: no attribute access to internals, no unsafe calls,
and every render bounded in steps, characters and time (:mod:`anvil_client._limits`). The FORGE checks and
previews a template with exactly the environment and limits the client renders it with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes

from anvil_client._exceptions import MissingVariables, TemplateError
from anvil_client._limits import DEFAULT_LIMITS, LimitedSandbox, RenderLimits, meter_tree, metered
from anvil_client._pieces import merge_text

__all__ = [
    "DEFAULT_LIMITS",
    "CompiledTemplate",
    "RenderLimits",
    "TemplateInfo",
    "check_template",
    "compile_template",
    "sandbox_environment",
]


def sandbox_environment() -> LimitedSandbox:
    """The one environment prompts are parsed and rendered with.

    ``keep_trailing_newline`` keeps a prompt's text exactly as written; autoescape is off because
    prompts are plain text, not HTML. Render through :func:`compile_template`, which applies the limits.
    """
    return LimitedSandbox(
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


_ENVIRONMENT = sandbox_environment()


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What a template needs: the variables it reads from its context."""

    variables: frozenset[str]
    is_substitution_only: bool


def check_template(source: str) -> TemplateInfo:
    """Parse ``source`` in the sandbox; raise :class:`TemplateError` (with its line) if it is not valid."""
    try:
        tree = _ENVIRONMENT.parse(source)
        variables = frozenset(meta.find_undeclared_variables(tree))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", line=exc.lineno) from exc
    except (RecursionError, MemoryError, ValueError) as exc:  # e.g. absurdly deep nesting
        raise TemplateError(f"template is too deeply nested to check: {type(exc).__name__}") from exc
    return TemplateInfo(variables=variables, is_substitution_only=_is_substitution_only(tree))


def _is_substitution_only(tree: nodes.Template) -> bool:
    """True when the template is text and ``{{ name }}`` outputs only: no filters, logic or attributes."""
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return False
        for child in node.nodes:
            if not isinstance(child, nodes.TemplateData | nodes.Name):
                return False
    return True


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A template compiled once for rendering.

    ``pieces`` is set for templates the client renders without Jinja2: a tuple of ``("text", data)`` and
    ``("var", name)`` in output order, taken from Jinja2's own parse tree (so white space control,
    ``{% raw %}`` and newline handling are Jinja2's). ``render`` is the sandboxed Jinja2 renderer either way.
    """

    variables: frozenset[str]
    pieces: tuple[tuple[str, str], ...] | None
    render: Callable[[Mapping[str, Any]], str]


_UNDEFINED_MESSAGE = re.compile(r"^'([A-Za-z_][A-Za-z0-9_]*)' is undefined$")


def compile_template(source: str, *, prompt_id: str = "?", limits: RenderLimits = DEFAULT_LIMITS) -> CompiledTemplate:
    """Check and compile ``source``; raise :class:`TemplateError` (with its line) if it is not valid.

    Each call of the result's ``render`` is bounded by ``limits`` and raises :class:`RenderLimitExceeded`
    past them.
    """
    try:
        tree = _ENVIRONMENT.parse(source)
        variables = frozenset(meta.find_undeclared_variables(tree))
        pieces = _fast_pieces(tree)
        tree, first_steps = meter_tree(tree, _ENVIRONMENT)
        template = _ENVIRONMENT.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", line=exc.lineno) from exc
    except (RecursionError, MemoryError, ValueError) as exc:  # e.g. absurdly deep nesting
        raise TemplateError(f"template cannot be compiled: {type(exc).__name__}") from exc
    render = metered(
        template.root_render_func, limits, first_steps, new_context=template.new_context,
        translate=_render_error(prompt_id),
    )
    return CompiledTemplate(variables=variables, pieces=pieces, render=render)


def _render_error(prompt_id: str) -> Callable[[Exception, Mapping[str, Any]], Exception]:
    """What a render's error becomes: the client's own errors, never Jinja2's or Python's."""

    def translate(exc: Exception, values: Mapping[str, Any]) -> Exception:
        if isinstance(exc, jinja2.UndefinedError):
            match = _UNDEFINED_MESSAGE.match(str(exc.message))
            if match and match.group(1) not in values:
                return MissingVariables(prompt_id, [match.group(1)])
            return TemplateError(str(exc.message))
        if isinstance(exc, jinja2.exceptions.SecurityError):
            return TemplateError(f"the sandbox does not allow this: {exc.message or exc}")
        if isinstance(exc, jinja2.TemplateError):
            return TemplateError(str(exc.message or exc))
        return TemplateError(f"{type(exc).__name__}: {exc}")

    return translate


def _fast_pieces(tree: nodes.Template) -> tuple[tuple[str, str], ...] | None:
    """The output pieces of a substitution-only template, or None when Jinja2 must render it.

    Names that are Jinja2 globals (``range``, ``lipsum``...) render as those objects when not given, so
    such templates stay with Jinja2.
    """
    pieces: list[tuple[str, str]] = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                if child.data:
                    pieces.append(("text", child.data))
            elif isinstance(child, nodes.Name) and child.ctx == "load" and child.name not in _ENVIRONMENT.globals:
                pieces.append(("var", child.name))
            else:
                return None
    return merge_text(pieces)
