"""Hot path: ``Client.prompt()`` against a dict lookup + ``str.format_map`` and a raw compiled Jinja2 render.

Two ~400-character templates with 3 variables, as production prompts look:

* substitution-only (text and ``{{ name }}``): ``prompt()`` takes the client's fast path; the baseline is
  ``table[id].format_map(variables)``, the least any prompt lookup can cost;
* with logic (``{% if %}``, a filter): ``prompt()`` renders with the sandboxed Jinja2 environment and its
  render limits; the baseline is the same template compiled once in Jinja2's own ``ImmutableSandboxedEnvironment``
  (same options, no limits) and rendered with ``Template.render``, so the ratio includes what the limits cost.

Every case is measured in this one process, interleaved round by round (so machine load hits all alike),
as ns per call over ``LOOPS`` calls, ``REPEATS`` times; figures are medians (and p99) of those samples.
The texts are checked equal before timing. To add a baseline, add an entry to :func:`cases`; another
script may also merge its own columns into ``bench/results/hot_path.json`` (``bench.hot_path_langfuse``).

Usage: ``python -m bench.hot_path [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import log, summarize, time_per_call_ns, write_result

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
        ],
        created_at="2026-11-25T10:00:00Z",
    )
    if not write_disk_bundle(cache_dir, load_bundle(bundle)):
        raise RuntimeError(f"cannot write the disk cache in {cache_dir}")
    client = Client(cache_dir=cache_dir, sync=False)
    client.start()
    return client


def cases(client: Any) -> dict[str, tuple[Callable[[], str], str]]:
    """name -> (call, expected text). Add a baseline here to have it measured in the same rounds."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    table = {SUBSTITUTION_ID: SUBSTITUTION.replace("{{ ", "{").replace(" }}", "}")}
    raw_sandbox = ImmutableSandboxedEnvironment(
        autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    jinja_template = raw_sandbox.from_string(LOGIC)
    substitution_text = table[SUBSTITUTION_ID].format_map(VARIABLES)
    logic_text = jinja_template.render(VARIABLES)
    prompt = client.prompt
    variables = VARIABLES
    return {
        "dict_format_map": (lambda: table[SUBSTITUTION_ID].format_map(variables), substitution_text),
        "anvil_substitution": (lambda: prompt(SUBSTITUTION_ID, variables), substitution_text),
        "jinja2_raw": (lambda: jinja_template.render(variables), logic_text),
        "anvil_logic": (lambda: prompt(LOGIC_ID, variables), logic_text),
        # Not a target: the keyword-argument form, for the record.
        "anvil_substitution_kwargs": (lambda: prompt(SUBSTITUTION_ID, **variables), substitution_text),
    }


def measure(loops: int = LOOPS, repeats: int = REPEATS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="anvil-bench-hot-") as tmp:
        client = _client(Path(tmp))
        try:
            table = cases(client)
            for name, (call, expected) in table.items():
                if call() != expected:
                    raise RuntimeError(f"{name} rendered a different text:\n{call()!r}\n!=\n{expected!r}")
            samples: dict[str, list[float]] = {name: [] for name in table}
            for call, _ in table.values():  # warm up
                time_per_call_ns(call, loops=loops, repeats=1, warmup=0)
            for _ in range(repeats):
                for name, (call, _) in table.items():
                    samples[name].extend(time_per_call_ns(call, loops=loops, repeats=1, warmup=0))
        finally:
            client.close()
    summaries = {name: summarize(values, 1) for name, values in samples.items()}
    figures: dict[str, Any] = {}
    for name, summary in summaries.items():
        figures[f"{name}_ns"] = summary["median"]
        figures[f"{name}_p99_ns"] = summary["p99"]
    figures["ratio_substitution_vs_dict"] = round(
        summaries["anvil_substitution"]["median"] / summaries["dict_format_map"]["median"], 3
    )
    figures["ratio_logic_vs_jinja2"] = round(summaries["anvil_logic"]["median"] / summaries["jinja2_raw"]["median"], 3)
    figures["targets"] = {"ratio_substitution_vs_dict": 1.5, "ratio_logic_vs_jinja2": 1.2}
    figures["hot_path"] = {
        "method": "one process; cases interleaved round by round; ns per call = one sample of LOOPS calls; "
        "median and p99 over REPEATS samples; texts checked equal before timing",
        "loops": loops,
        "repeats": repeats,
        "template_chars": {"substitution": len(SUBSTITUTION), "logic": len(LOGIC)},
        "variables": len(VARIABLES),
        "summaries_ns": summaries,
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quick = "--quick" in args
    log("hot_path: dict+format_map, prompt() fast path, raw Jinja2, prompt() with logic")
    figures = measure(loops=1_000 if quick else LOOPS, repeats=5 if quick else REPEATS)
    path = write_result("hot_path", figures, merge=True, meta_key="meta")
    log(
        f"hot_path: dict {figures['dict_format_map_ns']} ns, anvil substitution {figures['anvil_substitution_ns']} ns "
        f"(x{figures['ratio_substitution_vs_dict']}), jinja2 {figures['jinja2_raw_ns']} ns, anvil logic "
        f"{figures['anvil_logic_ns']} ns (x{figures['ratio_logic_vs_jinja2']})"
    )
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
