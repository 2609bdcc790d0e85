"""What the editor shows while typing: variables, undeclared and unused ones, errors, and the preview."""

from __future__ import annotations

import pytest

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts.analysis import prompt_analysis, prompt_preview

PARAMS = [
    {"name": "name", "type": "string", "required": True},
    {"name": "plan", "type": "string", "default": "free"},
    {"name": "count", "type": "number", "default": 1},
    {"name": "spare", "type": "string"},
]


def test_analysis_reports_variables_undeclared_and_unused():
    template = "Hi {{ name }} on {{ plan }}{% for i in range(count) %}{{ i }}{{ extra }}{% endfor %}"
    result = prompt_analysis(template, PARAMS)

    assert result.ok
    assert result.variables == ("count", "extra", "name", "plan")
    assert result.undeclared == ("extra",)
    assert result.unused == ("spare",)


def test_analysis_reports_syntax_error_with_line_instead_of_raising():
    result = prompt_analysis("one\ntwo {{ name\nthree", PARAMS)

    assert not result.ok
    assert result.error_line in (2, 3)
    assert result.error
    assert result.variables == ()


def test_analysis_of_loop_and_set_variables_does_not_report_them():
    template = "{% set greeting = 'hi' %}{% for item in items %}{{ greeting }} {{ item }}{% endfor %}"
    result = prompt_analysis(template, [])
    assert result.undeclared == ("items",)


def test_preview_renders_with_defaults_and_typed_text_values():
    text = prompt_preview(
        "{{ name }} ({{ plan }}): {% for i in range(count) %}*{% endfor %}", PARAMS, {"name": "Ada", "count": "3"}
    )
    assert text == "Ada (free): ***"


def test_preview_refuses_a_missing_required_parameter_naming_it():
    with pytest.raises(ApplicationError, match="Missing required parameter: name") as caught:
        prompt_preview("Hi {{ name }}", PARAMS, {})
    assert caught.value.extra == {"missing": ["name"]}


def test_preview_refuses_a_value_of_the_wrong_type():
    with pytest.raises(ApplicationError, match="count is not a number"):
        prompt_preview("{{ count }}", PARAMS, {"name": "x", "count": "many"})


def test_preview_refuses_sandbox_escapes():
    with pytest.raises(ApplicationError, match="sandbox"):
        prompt_preview("{{ ''.__class__.__mro__[1].__subclasses__() }}", [], {})
    with pytest.raises(ApplicationError):
        prompt_preview("{{ name.__class__.__init__.__globals__ }}", PARAMS, {"name": "x"})


def test_preview_reports_syntax_and_render_errors_clearly():
    with pytest.raises(ApplicationError, match="syntax error on line 1"):
        prompt_preview("{% if %}", [], {})
    with pytest.raises(ApplicationError, match="not given"):
        prompt_preview("{{ undeclared }}", [], {})
    with pytest.raises(ApplicationError, match="failed to render"):
        prompt_preview("{{ 1 / count }}", [{"name": "count", "type": "number"}], {"count": 0})
