"""Render limits: no template can hold the host's thread or memory, and ordinary templates render unchanged.

Every runaway below would, without the limits, run for hours or allocate gigabytes; each must be refused
with :class:`RenderLimitExceeded` naming the limit, quickly, and the client must keep serving.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

import jinja2
import pytest
from forge_stub import make_bundle
from jinja2.sandbox import ImmutableSandboxedEnvironment

from anvil_client import RenderLimitExceeded, TemplateError
from anvil_client._cache import write_disk_bundle
from anvil_client.bundle import load_bundle
from anvil_client.templates import DEFAULT_LIMITS, RenderLimits, compile_template

# (template, the limit that stops it)
RUNAWAYS = {
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "steps"),
    "loop filter only": (
        "{% for i in range(100000) %}{% for j in range(100000) if false %}{% endfor %}{% endfor %}", "steps",
    ),
    "string repeat": ("{{ 'a' * 10**10 }}", "size"),
    "list repeat": ("{% set l = ['x' * 1000000] * 1000 %}{{ l|length }}", "size"),
    "integer power": ("{{ 9 ** (9 ** 9) }}", "size"),
    "doubling by ~": ("{% set a = 'xxxxxxxxxx' %}" + "{% set a = a ~ a %}" * 40 + "{{ a|length }}", "size"),
    "doubling by +": ("{% set a = 'xxxxxxxxxx' %}" + "{% set a = a + a %}" * 40 + "{{ a|length }}", "size"),
    "center filter": ("{{ 'a'|center(10**10) }}", "size"),
    "indent filter": ("{{ ('x\n' * 100)|indent(10**6) }}", "size"),
    "replace filter": ("{{ ('a' * 1000000)|replace('', 'b' * 30) }}", "size"),
    "join separator": ("{{ range(10)|join('x' * 10**7) }}", "size"),
    "ljust method": ("{{ 'a'.ljust(10**10) }}", "size"),
    "zfill method": ("{{ 'a'.zfill(10**10) }}", "size"),
    "expandtabs method": ("{{ ('\t' * 10).expandtabs(10**9) }}", "size"),
    "translate method": ("{{ ('a' * 100).translate({97: 'x' * 10**6}) }}", "size"),
    "format width": ("{{ '{:>9999999999}'.format('a') }}", "size"),
    "nested format width": ("{{ '{:{w}}'.format('a', w=10**10) }}", "size"),
    "printf width": ("{{ '%9999999999s' % 'a' }}", "size"),
    "printf star width": ("{{ '%*s' % (10**10, 'a') }}", "size"),
    "exponential macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}", "steps",
    ),
    "map of wide centers": ("{{ range(100000)|map('center', 1000000)|join }}", "size"),
    "set block of big text": (
        "{% set x %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}{{ x|length }}", "size",
    ),
    "loop of literal text": ("{% for i in range(100000) %}" + "z" * 1000 + "{% endfor %}", "size"),
    "lipsum": ("{{ lipsum(1000000) }}", "size"),
    "batch fill": ("{{ [1]|batch(10**9, 'x')|list }}", "steps"),
    "list of references printed": ("{% set b = 'x' * 1000000 %}{% set l = [b, b, b, b, b, b, b, b] %}{{ [l, l, l] }}",
                                   "size"),
    "assigned list printed by name": (
        "{% set b = 'x' * 1000000 %}{% set l = [b, b, b, b, b, b, b, b, b, b] %}{% set m = [l, l, l] %}{{ m }}",
        "size",
    ),
    "bytes repeat": ("{{ 'a'.encode() * 10**10 }}", "size"),
    "bytes center": ("{{ 'a'.encode().center(10**10) }}", "size"),
    "bytes replace": ("{{ ('a' * 1000000).encode().replace(''.encode(), ('b' * 30).encode()) }}", "size"),
    "bytes printf width": ("{{ '%9999999999s'.encode() % 'a'.encode() }}", "size"),
    "printf precision": ("{{ '%.19000000f%.19000000f' % (1.0, 1.0) }}", "size"),
    "tojson of big values": ("{{ dict(a='x' * 10**7, b='y' * 10**7)|tojson }}", "size"),
    # Streamed loop outputs (the str test compiled in): each new text a filter makes is still counted.
    "upper of big text printed in a loop": (
        "{% set big = 'x' * 10**6 %}{% for i in range(100000) %}{{ big|upper }}{% endfor %}", "size",
    ),
    "markup lower printed in a loop": (
        "{% set big = ('x' * 10**6)|safe %}{% for i in range(100000) %}{{ big|lower }}{% endfor %}", "size",
    ),
    "upper of big text kept in a loop": (
        "{% set ns = namespace(l=[]) %}{% set big = 'x' * 10**6 %}{% for i in range(100000) %}"
        "{% set ns.l = [ns.l, big|upper] %}{% endfor %}{{ ns.l|length }}", "size",
    ),
    "a big list printed in a loop": (
        "{% set b = 'x' * 100000 %}{% set l = [b] * 100 %}{% for i in range(1000) %}{{ l }}{% endfor %}", "size",
    ),
    "filters in a loop's body only": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'a'|upper }}{{ j|string|trim }}"
        "{% endfor %}{% endfor %}", "steps",
    ),
}


def _render_guarded(source: str, timeout: float = 20.0) -> tuple[str, str | None, float]:
    """Render ``source`` in a forked child with 600 MB of address space to spare and a deadline.

    Returns (outcome, detail, CPU seconds): ("stopped", limit) for :class:`RenderLimitExceeded`. Should the
    limits ever break, the child runs out of memory or time and the test fails, instead of the whole run.
    """
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def run() -> None:
        with open("/proc/self/statm") as statm:
            in_use = int(statm.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (in_use + (600 << 20), resource.RLIM_INFINITY))
        started = time.process_time()
        try:
            compile_template(source).render({})
            outcome: tuple[str, str | None] = ("rendered", None)
        except RenderLimitExceeded as exc:
            outcome = ("stopped", exc.limit)
        except BaseException as exc:  # MemoryError above all: the limits did not hold
            outcome = (type(exc).__name__, str(exc)[:200])
        send.send((*outcome, time.process_time() - started))

    child = context.Process(target=run)
    child.start()
    try:
        if not receive.poll(timeout):
            pytest.fail(f"the render did not stop within {timeout:g} s")
        return receive.recv()
    finally:
        child.kill()
        child.join()


@pytest.mark.parametrize("name", sorted(RUNAWAYS))
def test_a_runaway_template_is_stopped_quickly_in_bounded_memory_naming_the_limit(name: str) -> None:
    source, limit = RUNAWAYS[name]
    outcome, detail, cpu_seconds = _render_guarded(source)
    assert (outcome, detail) == ("stopped", limit)
    assert cpu_seconds < 3.0


def test_the_limit_is_a_template_error_with_a_message_naming_it() -> None:
    with pytest.raises(TemplateError, match="more than 100,000 steps") as caught:
        compile_template(RUNAWAYS["nested loops"][0]).render({})
    assert isinstance(caught.value, RenderLimitExceeded) and caught.value.limit == "steps"


def test_work_without_output_is_stopped_by_the_time_limit() -> None:
    # Each step scans a ten-million-character string and creates nothing: only the clock can stop it.
    source = "{% set big = 'x' * 10**7 %}{% for i in range(100000) %}{{ 'y' in big }}{% endfor %}"
    compiled = compile_template(source, limits=RenderLimits(max_seconds=0.3))
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded) as caught:
        compiled.render({})
    assert caught.value.limit == "time"
    assert "0.3 s" in caught.value.message
    assert time.monotonic() - started < 3.0


def test_limits_are_per_render_and_configurable() -> None:
    source = "{% for i in range(n) %}.{% endfor %}"
    compiled = compile_template(source, limits=RenderLimits(max_steps=100))
    for _ in range(5):  # each render starts from zero
        assert compiled.render({"n": 90}) == "." * 90
    with pytest.raises(RenderLimitExceeded, match="more than 100 steps"):
        compiled.render({"n": 101})
    assert compile_template(source).render({"n": 101}) == "." * 101


def test_a_host_value_repeated_past_the_limit_is_refused_before_the_text_is_made() -> None:
    compiled = compile_template("{{ doc }}" * 2000)  # the application's value, printed at the top level
    assert len(compiled.render({"doc": "d" * 100})) == 200_000
    with pytest.raises(RenderLimitExceeded, match="longer than 20,000,000 characters"):
        compiled.render({"doc": "d" * 20_000})


def test_a_host_value_printed_in_a_loop_past_the_limit_is_refused_before_the_text_is_made() -> None:
    compiled = compile_template("{% for i in range(n) %}{{ doc }}{% endfor %}")
    assert len(compiled.render({"doc": "d" * 20_000, "n": 100})) == 2_000_000
    with pytest.raises(RenderLimitExceeded, match="20,000,000 characters"):
        compiled.render({"doc": "d" * 20_000, "n": 2_000})


def test_filter_calls_count_one_step_each_wherever_they_are_counted() -> None:
    # A body's unconditional filter calls are counted at its top; those under a branch as they run.
    limits = RenderLimits(max_steps=100)
    each_time = compile_template("{% for i in xs %}{{ x|upper }}{% endfor %}", limits=limits)
    assert each_time.render({"xs": list(range(50)), "x": "a"}) == "A" * 50  # 50 iterations + 50 calls
    with pytest.raises(RenderLimitExceeded, match="more than 100 steps"):
        each_time.render({"xs": list(range(51)), "x": "a"})
    branches = compile_template(
        "{% for i in xs %}{% if i is odd %}{{ x|upper|lower }}{% else %}{{ x|trim }}{% endif %}{% endfor %}",
        limits=limits,
    )
    assert branches.render({"xs": list(range(40)), "x": "a"}) == "a" * 40  # 40 + 20 * 2 + 20 * 1 = 100
    with pytest.raises(RenderLimitExceeded, match="more than 100 steps"):
        branches.render({"xs": list(range(41)), "x": "a"})  # one more iteration and one more call
    untaken = compile_template("{% for i in xs %}{% if false %}{{ x|upper }}{% endif %}{% endfor %}", limits=limits)
    assert untaken.render({"xs": list(range(100)), "x": "a"}) == ""
    top = compile_template("{{ x|upper }}" * 100, limits=limits)
    assert top.render({"x": "a"}) == "A" * 100
    with pytest.raises(RenderLimitExceeded, match="more than 100 steps"):
        compile_template("{{ x|upper }}" * 101, limits=limits).render({"x": "a"})
    mapped = compile_template("{{ xs|map('upper')|join }}", limits=limits)  # map, join, and a call per item
    assert mapped.render({"xs": ["a"] * 98}) == "A" * 98
    with pytest.raises(RenderLimitExceeded, match="more than 100 steps"):
        mapped.render({"xs": ["a"] * 99})


def test_the_clock_is_read_when_a_body_counts_several_steps_at_once() -> None:
    # Four steps per iteration (the loop and three filter calls): the count jumps past multiples of 32.
    source = "{% set big = 'x' * 10**7 %}{% for i in range(100000) %}{{ (big|lower|upper)|length }}{% endfor %}"
    compiled = compile_template(source, limits=RenderLimits(max_chars=10**12, max_seconds=0.3))
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded) as caught:
        compiled.render({})
    assert caught.value.limit == "time"
    assert time.monotonic() - started < 3.0


def test_a_host_value_larger_than_the_limit_is_refused_not_truncated() -> None:
    compiled = compile_template("Summarise: {{ doc }}", limits=RenderLimits(max_chars=1000))
    assert compiled.render({"doc": "d" * 900}) == "Summarise: " + "d" * 900
    with pytest.raises(RenderLimitExceeded, match="1,000 characters"):
        compiled.render({"doc": "d" * 1001})


RAW = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
CONTEXT: dict[str, Any] = {
    "name": "ada lovelace",
    "items": [{"title": "Apples", "n": 3}, {"title": "pears", "n": 0}, {"title": "Figs", "n": 12}],
    "tree": [{"name": "a", "children": [{"name": "b", "children": []}]}],
    "doc": "One line.\nTwo\tlines, with a URL: https://example.org and <b>tags</b>.",
    "n": 7,
    "ratio": 0.4567,
    "options": {"b": 2, "a": 1},
    "none": None,
}
# Ordinary templates using every construct the limits touch: they must render exactly as unlimited Jinja2.
ORDINARY = [
    "{{ name|title }} has {{ items|length }} items: {% for i in items %}{{ loop.index }}. {{ i.title }}"
    "{{ ', ' if not loop.last }}{% endfor %}",
    "{% for i in items if i.n %}{{ i.title|upper }}={{ i.n * 2 }}{% else %}none{% endfor %}",
    "{% for i in items %}{{ loop.cycle('odd', 'even') }}{% if loop.changed(i.n > 1) %}!{% endif %}{% endfor %}",
    "{% for node in tree recursive %}<{{ node.name }}>{{ loop(node.children) }}{% endfor %}",
    "{% macro row(label, value='-') %}[{{ label }}: {{ value }}]{% endmacro %}{{ row('a') }}{{ row('b', 2) }}",
    "{% macro box() %}({{ caller() }}){% endmacro %}{% call box() %}inside {{ name }}{% endcall %}",
    "{% filter upper %}shout {{ name }}{% endfilter %} {% set block %}kept {{ n }}{% endset %}{{ block }}",
    "{% set ns = namespace(total=0) %}{% for i in items %}{% set ns.total = ns.total + i.n %}{% endfor %}"
    "{{ ns.total }}",
    "{{ name ~ ' / ' ~ n ~ ' / ' ~ none }} {{ 'x' * 3 }} {{ 3 * 'y' }} {{ [1, 2] + [3] }} {{ (1, 2) * 2 }}",
    "{{ 2 ** 10 }} {{ 2.5 ** 2 }} {{ 17 % 5 }} {{ 7 // 2 }} {{ 10 ** -1 }} {{ ratio * 100 }}",
    "{{ '%s has %d items (%.1f%%)' % (name, n, ratio * 100) }} {{ '%(a)05d' % options }}",
    "{{ ('<b>{}</b>'|safe).format(doc) }} {{ ('<{a}>'|safe).format_map(options) }}",
    "{{ '{} is {:>8.2f}'.format(name, ratio) }} {{ '{a}-{b}'.format_map(options) }} {{ '{:{w}}|'.format('x', w=4) }}",
    "{{ doc|wordwrap(10) }}|{{ doc|indent(2, first=true) }}|{{ doc|truncate(20) }}|{{ doc|center(90) }}",
    "{{ doc|replace('line', 'row') }} {{ doc|urlize }} {{ doc|striptags }} {{ doc|wordcount }} {{ doc|escape }}",
    "{{ items|map(attribute='title')|join(', ') }} {{ items|selectattr('n')|map(attribute='n')|sum }}",
    "{{ items|sort(attribute='n')|map(attribute='title')|list }} {{ items|groupby('n')|list|length }}",
    "{{ range(10)|batch(3, 'x')|list }} {{ range(10)|slice(3)|list }} {{ options|dictsort }} {{ options|tojson }}",
    "{{ name.upper() }} {{ name.split() }} {{ '-'.join(['a', 'b']) }} {{ name.center(20, '*') }} {{ '7'.zfill(3) }}",
    "{{ 'a\tb'.expandtabs(4) }} {{ name.replace('a', 'A') }} {{ name.ljust(15) }}| {{ 'abc'.translate({97: 'AA'}) }}",
    "{{ options|pprint }} {{ items[0]|xmlattr }} {{ ratio|round(2) }} {{ '42'|int + 1 }} {{ none|default('d') }}",
    "{{ range(3)|list }} {{ dict(a=1)|items|list }} {% for k, v in options.items() %}{{ k }}{{ v }}{% endfor %}",
    "{%- for i in range(3) -%}\n  {{ i }}\n{%- endfor %}\n{% raw %}{{ not a tag }}{% endraw %}",
    "{% set j = joiner(' | ') %}{% for i in items %}{{ j() }}{{ i.title }}{% endfor %}",
    "{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}",
    "{% with x = n * 2 %}{{ x }}{% endwith %} {{ 'yes' if 'URL' in doc else 'no' }} {{ doc[:9] }} {{ n is odd }}",
    "{{ doc|list|length }} {{ (doc ~ doc)|length }} {{ doc|string|length }} {{ items|first }} {{ items|last }}",
    # Filters in every position a body's step counting distinguishes, and streamed outputs of every kind.
    "{% for i in items %}{{ i.title|upper if i.n else i.title|lower }}{{ (i.n > 1 and i.title|trim) or 'x'|upper }}"
    "{% if i.title|length > 4 %}{{ i.title|capitalize }}{% elif i.n|string == '0' %}{{ none|string }}{% endif %}"
    "{% else %}{{ 'never'|upper }}{% endfor %}",
    "{% for i in items|sort(attribute='n') if i.title|lower != 'figs' %}{{ loop.index }}{{ i }}{{ i.n * ratio }}"
    "{{ options }}{{ none }}{{ ratio }}{{ name|title }}{% endfor %}{% filter upper %}{{ name|lower }}{% endfilter %}",
    "{% macro m(x=name|upper) %}{{ x|lower }}{% endmacro %}{{ m() }}{{ m('B') }}"
    "{% macro box() %}({{ caller()|upper }}){% endmacro %}{% call box() %}{{ n|string }}{{ name|lower }}{% endcall %}"
    "{% set t %}{{ name|trim }}{% endset %}{{ t|length }}{{ (name|upper ~ doc|lower)|length }}",
    "{{ ('<b>'|safe)|lower }}{{ ('<b>'|safe)|upper }}{{ '<i>'|escape|trim }}{{ name|upper(**{}) }}"
    "{{ '  a '|trim('a ') }}",
]


@pytest.mark.parametrize("source", ORDINARY)
def test_ordinary_templates_render_exactly_as_unlimited_jinja2(source: str) -> None:
    assert compile_template(source).render(CONTEXT) == RAW.from_string(source).render(CONTEXT)


def test_the_sandbox_still_refuses_internals_under_the_limits() -> None:
    with pytest.raises(TemplateError, match="sandbox"):
        compile_template("{{ ''.__class__.__mro__ }}").render({})
    with pytest.raises(TemplateError, match="sandbox"):
        compile_template("{{ items.append(1) }}").render({"items": []})


def test_default_limits_are_far_above_real_prompts() -> None:
    assert DEFAULT_LIMITS.max_steps >= 100_000
    assert DEFAULT_LIMITS.max_chars >= 10_000_000  # about 2.5 million tokens
    source = "{% for d in docs %}# {{ loop.index }}\n{{ d }}\n{% endfor %}"
    docs = ["lorem ipsum " * 1000] * 500  # 6 MB of host text in 500 loop steps
    assert len(compile_template(source).render({"docs": docs})) > 6_000_000


def test_the_client_stops_a_runaway_prompt_and_keeps_serving(tmp_path: Path, make_client: Any) -> None:
    bundle = make_bundle("core", 1, [
        {"id": "runaway", "template": RUNAWAYS["nested loops"][0], "parameters": []},
        {"id": "good", "template": "{% for i in range(3) %}{{ i }}{% endfor %} {{ name }}",
         "parameters": [{"name": "name", "type": "string", "required": True}]},
    ])
    assert write_disk_bundle(tmp_path / "cache", load_bundle(bundle))
    client = make_client()
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded, match="steps"):
        client.prompt("runaway")
    assert client.prompt("runaway", fallback="safe") == "safe"
    assert time.monotonic() - started < 5.0
    assert client.prompt("good", name="Ada") == "012 Ada"


def test_a_clients_render_limits_come_from_its_config(tmp_path: Path, make_client: Any) -> None:
    loop = "{% for i in range(n) %}.{% endfor %}"
    bundle = make_bundle("core", 1, [
        {"id": "dots", "template": loop, "parameters": [{"name": "n", "type": "number", "required": True}]},
        {"id": "plain", "template": "Hi {{ name }}", "parameters": []},
    ])
    assert write_disk_bundle(tmp_path / "cache", load_bundle(bundle))
    strict = make_client(render_max_steps=50, render_max_chars=1_000)
    assert strict.prompt("dots", n=40) == "." * 40
    with pytest.raises(RenderLimitExceeded, match="more than 50 steps"):
        strict.prompt("dots", n=60)
    # The substitution fast path prints the application's values as they are: no limit applies.
    assert strict.prompt("plain", name="x" * 5_000) == "Hi " + "x" * 5_000
    assert make_client(cache_dir=tmp_path / "cache").prompt("dots", n=60) == "." * 60
