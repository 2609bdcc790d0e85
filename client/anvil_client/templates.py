"""Template checks shared by the FORGE (on save and preview) and the client (at load and render).

Templates are Jinja2 run in a sandboxed environment: no attribute access to internals, no unsafe calls.
The FORGE checks a template with exactly the environment the client renders it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from anvil_client._exceptions import TemplateError


def sandbox_environment() -> ImmutableSandboxedEnvironment:
    """The one environment prompts are parsed and rendered with.

    ``keep_trailing_newline`` keeps a prompt's text exactly as written; autoescape is off because
    prompts are plain text, not HTML.
    """
    return ImmutableSandboxedEnvironment(
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
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", line=exc.lineno) from exc
    variables = frozenset(meta.find_undeclared_variables(tree))
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
