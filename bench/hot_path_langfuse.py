"""The Langfuse column of ``bench/results/hot_path.json``: ``langfuse_ns`` and ``ratio_langfuse_vs_anvil``.

Measured in one process, one after the other, on the same ~400-character substitution-only template
with 3 variables (the texts are checked equal first):

* ``dict[id].format_map(variables)``: the floor, as in the main hot-path figure;
* ``client.prompt(id, variables)``: an ``anvil_client.Client`` serving from its disk cache, no sync;
* ``langfuse.get_prompt(name, cache_ttl_seconds=3600).compile(**variables)``: the Langfuse Python SDK
  against a loopback stub of its API, cache warmed, tracing off (:mod:`bench.langfuse_path`).

``ratio_langfuse_vs_anvil`` = Langfuse ns per call / Anvil ns per call, both from this run (target: at
least 3). The keys are merged into the file ``bench.hot_path`` writes; this run's metadata goes under
``meta_langfuse``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from anvil_client.bundle import build_bundle, load_bundle
from bench.common import log, summarize, time_per_call_ns, write_result
from bench.langfuse_path import measure_langfuse

LOOPS = 2_000
REPEATS = 25
PROMPT_ID = "support.welcome"
VARIABLES = {"name": "Ada Lovelace", "plan": "Enterprise", "ticket": "T-40213"}
# ~400 characters, three variables, substitution only: the shape of most production prompts.
TEMPLATE = (
    "You are the support assistant for Acme Cloud. The customer's name is {{ name }} and they are on the "
    "{{ plan }} plan. They opened ticket {{ ticket }} a few minutes ago. Greet them by name, acknowledge the "
    "ticket number, and answer in a calm, friendly and precise tone. Never invent features, prices or dates; "
    "if you are unsure, say so and offer to connect them with a human colleague. End with one next step."
)
FORMAT_TEMPLATE = TEMPLATE.replace("{{ ", "{").replace(" }}", "}")


def anvil_client_for(template: str, cache_dir: Path) -> Any:
    from anvil_client import Client
    from anvil_client._cache import write_disk_bundle

    bundle = build_bundle(
        forge="http://127.0.0.1:9",
        organisation="acme",
        project="support-bot",
        environment="production",
        set_slug="core",
        version=1,
        approval="approved",
        prompts=[
            {
                "id": PROMPT_ID,
                "template": template,
                "parameters": [{"name": name, "type": "string", "required": True} for name in VARIABLES],
            }
        ],
        created_at="2026-11-25T10:00:00Z",
    )
    if not write_disk_bundle(cache_dir, load_bundle(bundle)):
        raise RuntimeError(f"could not write the disk cache in {cache_dir}")
    return Client(cache_dir=cache_dir, sync=False)


def main() -> int:
    expected = FORMAT_TEMPLATE.format_map(VARIABLES)
    assert len(TEMPLATE) >= 380, len(TEMPLATE)
    with tempfile.TemporaryDirectory(prefix="anvil-bench-hot-") as tmp:
        client = anvil_client_for(TEMPLATE, Path(tmp))
        try:
            rendered = client.prompt(PROMPT_ID, VARIABLES)
            if rendered != expected:
                raise RuntimeError(f"anvil rendered a different text:\n{rendered!r}\n!=\n{expected!r}")
            table = {PROMPT_ID: FORMAT_TEMPLATE}

            def dict_call() -> str:
                return table[PROMPT_ID].format_map(VARIABLES)

            def anvil_call() -> str:
                return client.prompt(PROMPT_ID, VARIABLES)

            log("hot_path_langfuse: dict + format_map, anvil prompt(), Langfuse get_prompt().compile()")
            dict_ns = time_per_call_ns(dict_call, loops=LOOPS * 5, repeats=REPEATS)
            anvil_ns = time_per_call_ns(anvil_call, loops=LOOPS * 5, repeats=REPEATS)
            langfuse = measure_langfuse(TEMPLATE, VARIABLES, expected=expected, loops=LOOPS, repeats=REPEATS)
        finally:
            client.close()
    dict_summary = summarize(dict_ns, 1)
    anvil_summary = summarize(anvil_ns, 1)
    langfuse_summary = langfuse["summary_ns"]
    figures = {
        "langfuse_ns": langfuse_summary["median"],
        "langfuse_p99_ns": langfuse_summary["p99"],
        "ratio_langfuse_vs_anvil": round(langfuse_summary["median"] / anvil_summary["median"], 2),
        "langfuse": {
            "method": "same process, same ~400-char template and 3 variables; Langfuse SDK against a loopback "
            "stub of GET /api/public/v2/prompts/{name}, cache warmed (1 request), tracing off, 0 requests while "
            "timing; ns per call = median over repeats of loops",
            "template_chars": len(TEMPLATE),
            "langfuse_version": langfuse["langfuse_version"],
            "langfuse_ns": langfuse_summary,
            "anvil_substitution_ns_same_run": anvil_summary,
            "dict_format_map_ns_same_run": dict_summary,
            "ratio_anvil_vs_dict_same_run": round(anvil_summary["median"] / dict_summary["median"], 2),
            "stub_requests_warmup": langfuse["warmup_requests"],
            "stub_requests_while_timing": langfuse["requests_while_timing"],
            "loops": LOOPS,
            "repeats": REPEATS,
        },
    }
    path = write_result("hot_path", figures, merge=True, meta_key="meta_langfuse")
    log(
        f"hot_path_langfuse: dict {dict_summary['median']} ns, anvil {anvil_summary['median']} ns, "
        f"langfuse {langfuse_summary['median']} ns, ratio langfuse/anvil {figures['ratio_langfuse_vs_anvil']}"
    )
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
