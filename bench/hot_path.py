"""Hot path: ``Client.prompt()`` against a dict lookup + ``str.format_map`` and a raw compiled Jinja2 render.

Two ~400-character templates with 3 variables, as production prompts look, and one large template:

* substitution-only (text and ``{{ name }}``): ``prompt()`` takes the client's fast path; the baseline is
  ``table[id].format_map(variables)``, the least any prompt lookup can cost. Both call forms are timed:
  ``prompt(id, variables)`` and the README's ``prompt(id, name=..., plan=..., ticket=...)`` (keywords written
  out, as an application writes them), and ``prompt(id, **variables)`` for the record;
* with logic (``{% if %}``, a filter): ``prompt()`` renders with the sandboxed Jinja2 environment and its
  render limits; the baseline is the same template compiled once in Jinja2's own ``ImmutableSandboxedEnvironment``
  (same options, no limits) and rendered with ``Template.render``, so the ratio includes what the limits cost.
  Anvil's environment gives templates their globals as a plain dict, not Jinja2's ``ChainMap``, which every
  render copies (~1.5 us on a quiet machine); the ``*_dict_globals`` baselines make the same change to raw
  Jinja2, so the ratios against them are what the render limits cost on their own;
* a ~10 KB template with 50 declared variables (:func:`large_template`): ten sections, each with filtered
  outputs (``title``, ``upper``, ``length``, ``capitalize``, ``lower``), an ``{% if %}``, and a ``{% for %}`` over
  a list of three dicts printing ``loop.index`` and three fields; the same raw Jinja2 baseline. This is
  where the limits' per-output, per-filter and per-iteration metering shows.

The README writes ``anvil_client.prompt(...)``, the module-level function on the default client: both call forms
are timed through it too (``anvil_module_*``). With ``opentelemetry-sdk`` installed, a tracer provider is set
(after the clients above started, so they keep measuring the client without it) and a second client started
under it is timed (``*_otel_*``) with no span current (``idle``), with a span a sampler left unrecorded current
(``sampled_out``: the span the SDK makes under a ratio or parent-based sampler) and with a recording span
current (``recording``: the attributes are set on it on every call); ``ratio_otel_*`` divide by the same call
of the client without a provider (issue 17: within 1.1 when no span is recording).

Every case is measured in this one process, interleaved round by round (so machine load hits all alike),
as ns per call over ``LOOPS`` calls, ``REPEATS`` times; figures are medians (and p99) of those samples. The
clock is the measuring thread's CPU time (``time.thread_time_ns``): on a shared, loaded machine the time
the scheduler gives other processes is not the call's cost, and wall-clock samples then differ by 2-4x run
to run. ``paired_ratios`` adds, per target, the median of the ratios taken within each round.
The texts are checked equal before timing. To add a baseline, add an entry to :func:`cases`; another
script may also merge its own columns into ``bench/results/hot_path.json`` (``bench.hot_path_langfuse``).

Usage: ``python -m bench.hot_path [--quick]``.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import log, seconds_left, summarize, write_result

LOOPS = 5_000
REPEATS = 30
VARIABLES = {"name": "Ada Lovelace", "plan": "Enterprise", "ticket": "T-40213"}
SUBSTITUTION_ID = "support.welcome"
LOGIC_ID = "support.welcome_logic"
SUBSTITUTION = (
    "You are the support assistant for Acme Cloud. The customer's name is {{ name }} and they are on the "
    "{{ plan }} plan. They opened ticket {{ ticket }} a few minutes ago. Greet them by name, acknowledge the "
    "ticket number, and answer in a calm, friendly and precise tone. Never invent features, prices or dates; "
    "if you are unsure, say so and offer to connect them with a human colleague. End with one next step."
)
LOGIC = (
    "You are the support assistant for Acme Cloud. The customer is {{ name | title }}. "
    "{% if plan == 'Enterprise' %}They are an Enterprise customer: answer first, with a named engineer on call."
    "{% else %}They are on the {{ plan }} plan: point to the self-service guides first.{% endif %} "
    "They opened ticket {{ ticket }}. Acknowledge the ticket number, answer in a calm, friendly, precise tone. "
    "Never invent features, prices or dates; if unsure, say so and offer a human colleague."
)


LARGE_ID = "support.account_review"
_SECTIONS = ("account", "billing", "security", "integrations", "reporting", "support", "onboarding", "compliance",
             "performance", "roadmap")
_FILLER = (
    "Keep the answer grounded in the facts below and in the conversation so far; do not speculate about "
    "features that are not listed, and say plainly when something is not known. "
)


def large_template() -> tuple[str, dict[str, Any]]:
    """A ~10 KB template with logic and its 50 variables (4 + 4 per section x 10 + 6 facts)."""
    parts = [
        "You are the assistant for {{ company }}, speaking with {{ customer_name | title }} "
        "({{ customer_role }}) from {{ customer_org }}.\n\n"
    ]
    variables: dict[str, Any] = {
        "company": "Acme Cloud", "customer_name": "ada lovelace", "customer_role": "CTO",
        "customer_org": "Analytical Engines Ltd",
    }
    for index, topic in enumerate(_SECTIONS):
        owner, status, tier, items = f"{topic}_owner", f"{topic}_status", f"{topic}_tier", f"{topic}_items"
        parts.append(
            f"## {topic.title()}\nThe {topic} owner is {{{{ {owner} | title }}}} (status {{{{ {status} | upper }}}}). "
            + _FILLER * 2
            + f"{{% if {tier} == 'gold' %}}This customer has gold {topic} support: answer first, escalate at once, "
            f"and name the engineer on call.{{% else %}}This customer has {{{{ {tier} }}}} {topic} support: point to "
            f"the guides first.{{% endif %}}\nOpen {topic} items ({{{{ {items} | length }}}}):\n"
            f"{{% for item in {items} %}}{{{{ loop.index }}}}. {{{{ item.title | capitalize }}}}: "
            f"{{{{ item.state | lower }}}}{{% if item.due %}}, due {{{{ item.due }}}}{{% endif %}}\n{{% endfor %}}\n"
        )
        variables[owner] = f"owner {index}"
        variables[status] = "green" if index % 2 else "amber"
        variables[tier] = "gold" if index % 3 == 0 else "silver"
        variables[items] = [
            {"title": f"{topic} item {k}", "state": "OPEN", "due": "" if k % 2 else f"2026-12-{k + 10}"}
            for k in range(3)
        ]
    for index in range(50 - len(variables)):
        parts.append(f"Fact {index}: {{{{ fact_{index:02d} }}}}. ")
        variables[f"fact_{index:02d}"] = f"value {index}"
    parts.append("\nEnd with one next step.")
    return "".join(parts), variables


LARGE, LARGE_VARIABLES = large_template()


def time_per_call_ns(call: Callable[[], Any], *, loops: int) -> float:
    """CPU nanoseconds of this thread per call of ``call``, over ``loops`` calls."""
    clock = time.thread_time_ns
    start = clock()
    for _ in range(loops):
        call()
    return (clock() - start) / loops


def _client(cache_dir: Path) -> Any:
    from anvil_client import Client
    from anvil_client._cache import write_disk_bundle
    from anvil_client.bundle import build_bundle, load_bundle

    parameters = [{"name": name, "type": "string", "required": True} for name in VARIABLES]
    bundle = build_bundle(
        forge="http://127.0.0.1:9",
        organisation="acme",
        project="support-bot",
        environment="production",
        set_slug="core",
        version=1,
        approval="approved",
        prompts=[
            {"id": SUBSTITUTION_ID, "template": SUBSTITUTION, "parameters": parameters},
            {"id": LOGIC_ID, "template": LOGIC, "parameters": parameters},
            {
                "id": LARGE_ID,
                "template": LARGE,
                "parameters": [
                    {"name": name, "type": "list" if isinstance(value, list) else "string", "required": True}
                    for name, value in LARGE_VARIABLES.items()
                ],
            },
        ],
        created_at="2026-11-25T10:00:00Z",
    )
    if not write_disk_bundle(cache_dir, load_bundle(bundle)):
        raise RuntimeError(f"cannot write the disk cache in {cache_dir}")
    client = Client(cache_dir=cache_dir, sync=False)
    client.start()
    return client


Case = tuple[Callable[[], str], str, Callable[[], Any] | None]  # (call, expected text, context around a sample)


def _module_client(cache_dir: Path) -> Callable[..., str]:
    """``anvil_client.prompt``, the README's function, on a default client reading ``cache_dir`` (started)."""
    import anvil_client

    anvil_client.configure(cache_dir=cache_dir, sync=False).start()
    return anvil_client.prompt


def _otel(cache_dir: Path) -> tuple[Any, dict[str, Callable[[], Any]]] | None:
    """A tracer provider set for the process and a client started under it, with the contexts to time it in
    (``None`` without ``opentelemetry-sdk``: never a dependency of the client)."""
    try:
        from opentelemetry import context, trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
    except ImportError:
        return None

    provider = TracerProvider()  # no span processor: what is timed is the client's part, not an exporter's
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        return None  # the process had one already: the clients above would not be measured without it
    client = _client(cache_dir)
    if client._traced is None:
        raise RuntimeError("the client started under a tracer provider does not trace")
    sampled_out = TracerProvider(sampler=ALWAYS_OFF).get_tracer("bench").start_span("request")
    recording = provider.get_tracer("bench").start_span("request")
    if sampled_out.is_recording() or not recording.is_recording():
        raise RuntimeError("the sampler did not make the spans expected")

    @contextlib.contextmanager
    def current(span: Any) -> Any:
        token = context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            context.detach(token)

    return client, {
        "idle": contextlib.nullcontext,
        "sampled_out": lambda: current(sampled_out),
        "recording": lambda: current(recording),
    }


def cases(client: Any, module_prompt: Callable[..., str] | None = None,
          otel: tuple[Any, dict[str, Callable[[], Any]]] | None = None) -> dict[str, Case]:
    """name -> (call, expected text, context around each sample or None). Add a baseline here to have it measured
    in the same rounds."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    table = {SUBSTITUTION_ID: SUBSTITUTION.replace("{{ ", "{").replace(" }}", "}")}
    raw_sandbox = ImmutableSandboxedEnvironment(
        autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    jinja_template = raw_sandbox.from_string(LOGIC)
    jinja_large = raw_sandbox.from_string(LARGE)
    # The same, with the template's globals as a plain dict instead of Jinja2's ChainMap (as Anvil's
    # environment makes them): what is left of the ratio against these is the render limits' own cost.
    jinja_dict_globals = raw_sandbox.from_string(LOGIC)
    jinja_dict_globals.globals = dict(jinja_dict_globals.globals)
    jinja_large_dict_globals = raw_sandbox.from_string(LARGE)
    jinja_large_dict_globals.globals = dict(jinja_large_dict_globals.globals)
    substitution_text = table[SUBSTITUTION_ID].format_map(VARIABLES)
    logic_text = jinja_template.render(VARIABLES)
    large_text = jinja_large.render(LARGE_VARIABLES)
    prompt = client.prompt
    variables = VARIABLES
    large_variables = LARGE_VARIABLES
    name, plan, ticket = VARIABLES["name"], VARIABLES["plan"], VARIABLES["ticket"]
    plain: dict[str, tuple[Callable[[], str], str]] = {
        "dict_format_map": (lambda: table[SUBSTITUTION_ID].format_map(variables), substitution_text),
        "anvil_substitution": (lambda: prompt(SUBSTITUTION_ID, variables), substitution_text),
        # The README's form: keyword arguments written out in the call.
        "anvil_substitution_keywords": (
            lambda: prompt(SUBSTITUTION_ID, name=name, plan=plan, ticket=ticket), substitution_text
        ),
        # The same keywords unpacked from a dict (Python copies the dict into the call's keywords first).
        "anvil_substitution_kwargs": (lambda: prompt(SUBSTITUTION_ID, **variables), substitution_text),
        "jinja2_raw": (lambda: jinja_template.render(variables), logic_text),
        "anvil_logic": (lambda: prompt(LOGIC_ID, variables), logic_text),
        "jinja2_raw_large": (lambda: jinja_large.render(large_variables), large_text),
        "anvil_logic_large": (lambda: prompt(LARGE_ID, large_variables), large_text),
        "jinja2_dict_globals": (lambda: jinja_dict_globals.render(variables), logic_text),
        "jinja2_dict_globals_large": (lambda: jinja_large_dict_globals.render(large_variables), large_text),
    }
    if module_prompt is not None:
        plain["anvil_module_keywords"] = (
            lambda: module_prompt(SUBSTITUTION_ID, name=name, plan=plan, ticket=ticket), substitution_text
        )
        plain["anvil_module_dict"] = (lambda: module_prompt(SUBSTITUTION_ID, variables), substitution_text)
        # The README's second line: a mapping and a fallback text (returned only when the prompt fails).
        plain["anvil_module_dict_fallback"] = (
            lambda: module_prompt(SUBSTITUTION_ID, variables, fallback="Hi! How can I help?"), substitution_text
        )
    made: dict[str, Case] = {key: (call, text, None) for key, (call, text) in plain.items()}
    if otel is not None:
        traced = otel[0].prompt
        for state, around in otel[1].items():
            made[f"anvil_substitution_otel_{state}"] = (
                lambda: traced(SUBSTITUTION_ID, variables), substitution_text, around
            )
            made[f"anvil_substitution_keywords_otel_{state}"] = (
                lambda: traced(SUBSTITUTION_ID, name=name, plan=plan, ticket=ticket), substitution_text, around
            )
            made[f"anvil_logic_otel_{state}"] = (lambda: traced(LOGIC_ID, variables), logic_text, around)
    return made


def _sample(case: Case, loops: int) -> float:
    call, _, around = case
    if around is None:
        return time_per_call_ns(call, loops=loops)
    with around():
        return time_per_call_ns(call, loops=loops)


def measure(loops: int = LOOPS, repeats: int = REPEATS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="anvil-bench-hot-") as tmp:
        client = _client(Path(tmp) / "plain")
        module_prompt = _module_client(Path(tmp) / "plain")
        otel = _otel(Path(tmp) / "otel")
        try:
            table = cases(client, module_prompt, otel)
            for name, (call, expected, around) in table.items():
                with (around or contextlib.nullcontext)():
                    text = call()
                if text != expected:
                    raise RuntimeError(f"{name} rendered a different text:\n{text!r}\n!=\n{expected!r}")
            samples: dict[str, list[float]] = {name: [] for name in table}
            # The large template costs ~30x a small one: fewer calls per sample, in the same rounds.
            calls = {name: max(loops // 30, 10) if "_large" in name else loops for name in table}
            for name, case in table.items():  # warm up
                _sample(case, calls[name])
            started = time.monotonic()
            for done in range(repeats):
                # Under ``python -m bench``'s wall-clock limit: stop adding rounds (at least 10) when the next
                # one might not fit (a loaded machine stretches the wall time, not the CPU time measured).
                if done >= 10 and seconds_left() < 10 + 2 * (time.monotonic() - started) / done:
                    break
                for name, case in table.items():
                    samples[name].append(_sample(case, calls[name]))
        finally:
            client.close()
            if otel is not None:
                otel[0].close()
            import anvil_client

            anvil_client.default_client().close()
    summaries = {name: summarize(values, 1) for name, values in samples.items()}
    figures: dict[str, Any] = {}
    for name, summary in summaries.items():
        figures[f"{name}_ns"] = summary["median"]
        figures[f"{name}_p99_ns"] = summary["p99"]
    figures["ratio_substitution_vs_dict"] = round(
        summaries["anvil_substitution"]["median"] / summaries["dict_format_map"]["median"], 3
    )
    figures["ratio_logic_vs_jinja2"] = round(summaries["anvil_logic"]["median"] / summaries["jinja2_raw"]["median"], 3)
    figures["ratio_logic_large_vs_jinja2"] = round(
        summaries["anvil_logic_large"]["median"] / summaries["jinja2_raw_large"]["median"], 3
    )
    # Not targets: against Jinja2 with plain-dict globals, i.e. what the limits (and prompt()) cost on their own.
    figures["ratio_logic_vs_jinja2_dict_globals"] = round(
        summaries["anvil_logic"]["median"] / summaries["jinja2_dict_globals"]["median"], 3
    )
    figures["ratio_logic_large_vs_jinja2_dict_globals"] = round(
        summaries["anvil_logic_large"]["median"] / summaries["jinja2_dict_globals_large"]["median"], 3
    )
    # The README's call form against the dict baseline (``prompt(id, **variables)`` is in the summaries too).
    figures["ratio_kwargs_vs_dict"] = round(
        summaries["anvil_substitution_keywords"]["median"] / summaries["dict_format_map"]["median"], 3
    )
    figures["ratio_kwargs_unpacked_vs_dict"] = round(
        summaries["anvil_substitution_kwargs"]["median"] / summaries["dict_format_map"]["median"], 3
    )
    optional_pairs = {
        # The README's function, anvil_client.prompt (the default client), in both call forms.
        "ratio_module_kwargs_vs_dict": ("anvil_module_keywords", "dict_format_map"),
        "ratio_module_dict_vs_dict": ("anvil_module_dict", "dict_format_map"),
        "ratio_module_fallback_vs_dict": ("anvil_module_dict_fallback", "dict_format_map"),
        # A tracer provider set (issue 17): the same call by a client started under it / without it.
        "ratio_otel_idle_vs_plain": ("anvil_substitution_otel_idle", "anvil_substitution"),
        "ratio_otel_sampled_out_vs_plain": ("anvil_substitution_otel_sampled_out", "anvil_substitution"),
        "ratio_otel_recording_vs_plain": ("anvil_substitution_otel_recording", "anvil_substitution"),
        "ratio_otel_keywords_idle_vs_plain": ("anvil_substitution_keywords_otel_idle", "anvil_substitution_keywords"),
        "ratio_otel_keywords_sampled_out_vs_plain": (
            "anvil_substitution_keywords_otel_sampled_out", "anvil_substitution_keywords"
        ),
        "ratio_otel_keywords_recording_vs_plain": (
            "anvil_substitution_keywords_otel_recording", "anvil_substitution_keywords"
        ),
        "ratio_otel_logic_idle_vs_plain": ("anvil_logic_otel_idle", "anvil_logic"),
        "ratio_otel_logic_sampled_out_vs_plain": ("anvil_logic_otel_sampled_out", "anvil_logic"),
        "ratio_otel_logic_recording_vs_plain": ("anvil_logic_otel_recording", "anvil_logic"),
    }
    optional_pairs = {key: pair for key, pair in optional_pairs.items() if pair[0] in summaries}
    for key, (case, base) in optional_pairs.items():
        figures[key] = round(summaries[case]["median"] / summaries[base]["median"], 3)
    pairs = {
        **optional_pairs,
        "ratio_substitution_vs_dict": ("anvil_substitution", "dict_format_map"),
        "ratio_kwargs_vs_dict": ("anvil_substitution_keywords", "dict_format_map"),
        "ratio_kwargs_unpacked_vs_dict": ("anvil_substitution_kwargs", "dict_format_map"),
        "ratio_logic_vs_jinja2": ("anvil_logic", "jinja2_raw"),
        "ratio_logic_large_vs_jinja2": ("anvil_logic_large", "jinja2_raw_large"),
        "ratio_logic_vs_jinja2_dict_globals": ("anvil_logic", "jinja2_dict_globals"),
        "ratio_logic_large_vs_jinja2_dict_globals": ("anvil_logic_large", "jinja2_dict_globals_large"),
    }
    figures["paired_ratios"] = {
        key: round(statistics.median(a / b for a, b in zip(samples[case], samples[base], strict=True)), 3)
        for key, (case, base) in pairs.items()
    }
    figures["targets"] = {
        "ratio_substitution_vs_dict": 1.5,
        "ratio_logic_vs_jinja2": 1.15,
        "ratio_logic_large_vs_jinja2": 1.2,
        "ratio_kwargs_vs_dict": 0.7,
        "ratio_module_kwargs_vs_dict": 0.7,
        "ratio_otel_idle_vs_plain": 1.1,
        "ratio_otel_sampled_out_vs_plain": 1.1,
        "ratio_otel_keywords_idle_vs_plain": 1.1,
        "ratio_otel_keywords_sampled_out_vs_plain": 1.1,
        "ratio_otel_logic_idle_vs_plain": 1.1,
        "ratio_otel_logic_sampled_out_vs_plain": 1.1,
    }
    figures["hot_path"] = {
        "method": "one process; cases interleaved round by round; ns per call = one sample of LOOPS calls "
        "(LOOPS / 30 for the 10 KB template), timed by the thread's CPU clock; median and p99 over REPEATS "
        "samples; paired_ratios = median of the per-round ratios; texts checked equal before timing",
        "clock": "time.thread_time_ns",
        "loops": loops,
        "repeats": len(samples["dict_format_map"]),
        "template_chars": {"substitution": len(SUBSTITUTION), "logic": len(LOGIC), "logic_large": len(LARGE)},
        "variables": len(VARIABLES),
        "variables_large": len(LARGE_VARIABLES),
        "summaries_ns": summaries,
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quick = "--quick" in args
    log("hot_path: dict+format_map, prompt() fast path (both call forms), raw Jinja2, prompt() with logic (two sizes)")
    figures = measure(loops=1_000 if quick else LOOPS, repeats=5 if quick else REPEATS)
    path = write_result("hot_path", figures, merge=True, meta_key="meta")
    log(
        f"hot_path: dict {figures['dict_format_map_ns']} ns, anvil substitution {figures['anvil_substitution_ns']} ns "
        f"(x{figures['ratio_substitution_vs_dict']}), jinja2 {figures['jinja2_raw_ns']} ns, anvil logic "
        f"{figures['anvil_logic_ns']} ns (x{figures['ratio_logic_vs_jinja2']}); keywords "
        f"{figures['anvil_substitution_keywords_ns']} ns (x{figures['ratio_kwargs_vs_dict']} dict), **dict "
        f"{figures['anvil_substitution_kwargs_ns']} ns (x{figures['ratio_kwargs_unpacked_vs_dict']}); 10 KB: jinja2 "
        f"{figures['jinja2_raw_large_ns']} ns, anvil {figures['anvil_logic_large_ns']} ns "
        f"(x{figures['ratio_logic_large_vs_jinja2']})"
    )
    log(
        f"hot_path: anvil_client.prompt keywords x{figures.get('ratio_module_kwargs_vs_dict')} dict, mapping "
        f"x{figures.get('ratio_module_dict_vs_dict')}; tracer provider set (x the same call without): no span "
        f"x{figures.get('ratio_otel_idle_vs_plain')}, sampled out x{figures.get('ratio_otel_sampled_out_vs_plain')}, "
        f"recording x{figures.get('ratio_otel_recording_vs_plain')}; logic: no span "
        f"x{figures.get('ratio_otel_logic_idle_vs_plain')}, sampled out "
        f"x{figures.get('ratio_otel_logic_sampled_out_vs_plain')}"
    )
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
