"""The fast path renders exactly what the sandboxed Jinja2 environment renders (design promise 6)."""

from __future__ import annotations

import math
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from anvil_client import MissingVariables
from anvil_client._render import CompiledPrompt
from anvil_client.bundle import Parameter, PromptSpec
from anvil_client.templates import compile_template, sandbox_environment

ENV = sandbox_environment()
NAMES = ["name", "plan", "x", "count", "_v1"]


class Shouting(str):
    def __str__(self) -> str:
        return self.upper()


class Formatted(str):
    def __format__(self, spec: str) -> str:
        return "formatted!"


class ReturnsSubclass:
    def __str__(self) -> str:
        return Formatted("inner")


class Plain:
    def __str__(self) -> str:
        return "plain object"


class Num(int):
    def __str__(self) -> str:
        return "num!"


text_pieces = st.lists(
    st.sampled_from([*"ab {}%#-\n\r\t é€🙂\\\"'", "{#c#}", "\r\n", "  \n", "{% raw %}{{x}}{% endraw %}"]),
    max_size=12,
).map("".join)
variable_pieces = st.tuples(
    st.sampled_from(["{{", "{{-", "{{ ", "{{- ", "{{\n", "{{+ ", "{{{ "]),
    st.sampled_from(NAMES),
    st.sampled_from(["}}", "-}}", " }}", " -}}", "\t}}", "}}}", " -}} "]),
).map("".join)
odd_variables = st.sampled_from(["{{ true }}", "{{ range }}", "{{ none }}", "{{ loop }}", "{{ x|e }}", "{{ - x }}"])
templates = st.lists(st.one_of(text_pieces, variable_pieces), max_size=8).map("".join)
any_templates = st.lists(st.one_of(text_pieces, variable_pieces, odd_variables), max_size=8).map("".join)

values = st.one_of(
    st.text(max_size=10),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.text(max_size=5).map(Shouting),
    st.text(max_size=5).map(Formatted),
    st.integers().map(Num),
    st.just(ReturnsSubclass()),
    st.just(Plain()),
    st.decimals(allow_nan=False, places=3),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
)


def jinja_render(source: str, context: dict[str, Any]) -> str:
    return ENV.from_string(source).render(context)


def compiled(source: str, parameters: tuple[Parameter, ...] = ()) -> CompiledPrompt:
    spec = PromptSpec(id="p", template=source, description="", parameters=parameters, metadata={})
    return CompiledPrompt(spec, set_slug="core", version=1)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(source=templates, context=st.fixed_dictionaries({name: values for name in NAMES}))
@example(source="Hello {{ name }}\n", context=dict.fromkeys(NAMES))
@example(source="{{ x }}{{ x }}\r\n\n", context={n: 1.0 for n in NAMES})
@example(source="  {{- name -}}  \n", context={n: Shouting("a") for n in NAMES})
def test_fast_path_equals_sandboxed_jinja2(source: str, context: dict[str, Any]) -> None:
    try:
        ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        assume(False)
    prompt = compiled(source)
    assert prompt.fast, source
    assert prompt.render(context) == jinja_render(source, context)


@settings(max_examples=150, deadline=None)
@given(
    source=templates,
    name=st.one_of(st.text(max_size=8), st.text(max_size=4).map(Shouting)),
    count=st.one_of(st.integers(), st.floats(allow_nan=False)),
)
def test_fast_path_with_typed_parameters_and_defaults_equals_jinja2(source: str, name: str, count: float) -> None:
    try:
        ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        assume(False)
    parameters = (
        Parameter("name", "string", True, None, ""),
        Parameter("count", "number", False, 7, ""),
        Parameter("plan", "string", False, "Free", ""),
        Parameter("x", "boolean", False, None, ""),
        Parameter("_v1", "list", False, [1, 2], ""),
    )
    prompt = compiled(source, parameters)
    context = {"name": name, "count": count}
    assert prompt.render(context) == jinja_render(source, {"plan": "Free", "x": None, "_v1": [1, 2], **context})


@pytest.mark.parametrize(
    "source",
    [
        "Hello {{ name }}",
        "{{ name }}{{ plan }} and {# comment #} {{ name }}\n",
        "{% raw %}{{ literal }}{% endraw %} {{ name }}",
        "line one\r\nline two {{ name }}\r\n",
    ],
)
def test_substitution_only_templates_take_the_fast_path(source: str) -> None:
    assert compiled(source).fast
    assert compile_template(source).pieces is not None


@pytest.mark.parametrize(
    "source",
    [
        "{% if name %}x{% endif %}",
        "{{ name | upper }}",
        "{{ name.attr }}",
        "{{ 'const' }}",
        "{{ range }}",  # a Jinja2 global: rendered as the function when not given
        "{% for i in items %}{{ i }}{% endfor %}",
    ],
)
def test_templates_with_logic_render_with_jinja2(source: str) -> None:
    assert not compiled(source).fast


def test_logic_template_renders_like_jinja2_with_defaults() -> None:
    source = "{% for item in items %}{{ loop.index }}. {{ item|title }}\n{% endfor %}{% if vip %}VIP{% endif %}"
    prompt = compiled(
        source, (Parameter("items", "list", True, None, ""), Parameter("vip", "boolean", False, False, ""))
    )
    assert prompt.render({"items": ["a", "b"]}) == jinja_render(source, {"items": ["a", "b"], "vip": False})


def test_logic_template_missing_an_undeclared_variable_names_it() -> None:
    prompt = compiled("{% if x %}{{ y }}{% endif %}")
    with pytest.raises(MissingVariables, match="x"):
        prompt.render({})
    assert prompt.render({"x": False}) == ""


def test_nan_and_infinity_render_like_jinja2() -> None:
    prompt = compiled("{{ x }} {{ name }}")
    context = {"x": math.nan, "name": -math.inf}
    assert prompt.render(context) == jinja_render("{{ x }} {{ name }}", context) == "nan -inf"


@pytest.mark.parametrize(
    "source", ["{{" + "(" * 3000 + "x" + ")" * 3000 + "}}", "{% if x %}" * 600 + "{% endif %}" * 600]
)
def test_absurdly_nested_templates_are_a_template_error_not_a_crash(source: str) -> None:
    from anvil_client import TemplateError
    from anvil_client.templates import check_template

    with pytest.raises(TemplateError):
        compile_template(source)
    with pytest.raises(TemplateError):
        check_template(source)


@settings(max_examples=1000, deadline=None)
@given(source=any_templates)
@example(source="{ {{- x }}")
@example(source="{{{ x }}")
@example(source="a {{- x -}} \n\r\n b {{y}}}")
@example(source="\u2028{{- x -}}\u00a0\x1c")
def test_jinja_free_tokenizer_agrees_with_jinja2s_parse_tree(source: str) -> None:
    from anvil_client._render import simple_pieces
    from anvil_client.templates import _fast_pieces

    pieces = simple_pieces(source)
    if pieces is None:
        return  # Jinja2 decides
    assert _fast_pieces(ENV.parse(source)) == pieces, source  # parses, and to the same pieces


class Items(list):  # type: ignore[type-arg]
    pass


class Options(dict):  # type: ignore[type-arg]
    pass


def test_list_and_object_parameters_accept_their_kinds_and_refuse_others() -> None:
    from collections import OrderedDict

    from anvil_client import InvalidVariable

    prompt = compiled(
        "{{ items|length }} {{ options|length }}",
        (Parameter("items", "list", True, None, ""), Parameter("options", "object", False, None, "")),
    )
    for items in ([1, 2], (1, 2), Items([1, 2])):
        for options in ({"a": 1}, Options(a=1), OrderedDict(a=1)):
            assert prompt.render({"items": items, "options": options}) == "2 1"
    assert compiled("{{ options }}", (Parameter("options", "object", False, None, ""),)).render({"options": None}) == (
        "None"
    )
    for bad in ({"items": "ab", "options": {}}, {"items": {1: 2}, "options": {}}, {"items": [], "options": [1]},
                {"items": None, "options": {}}):
        with pytest.raises(InvalidVariable):
            prompt.render(bad)


def test_logic_templates_see_the_same_globals_as_jinja2() -> None:
    source = (
        "{{ range(3)|list }} {{ dict(a=1) }} {% set c = cycler('x', 'y') %}{{ c.next() }}{{ c.next() }} "
        "{% set j = joiner('+') %}{{ j() }}a{{ j() }}b {% set ns = namespace(n=2) %}{{ ns.n }} "
        "{{ lipsum(1)|length > 0 }}"
    )
    prompt = compiled(source)
    assert not prompt.fast
    assert prompt.render({}) == jinja_render(source, {})
    # A value the application passes under a global's name wins, as in Jinja2.
    assert compiled("{{ range }}").render({"range": "mine"}) == "mine" == jinja_render("{{ range }}", {"range": "mine"})
