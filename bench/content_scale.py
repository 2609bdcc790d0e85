"""Scale of content: bundles of 10, 1,000 and 10,000 prompts: size, load and verify time, memory.

Bundles are built with the FORGE's own builder (``anvil_client.bundle.build_bundle``) from realistic
prompts (~400-character templates, three declared parameters, one in four with ``{% if %}`` logic,
a description and model metadata), then loaded the way the client loads every bundle it receives
or reads from disk: ``load_bundle(bytes)``, which parses the JSON, checks the schema of every prompt
and recomputes both sha256 digests. The parse alone (``json.loads``) is timed beside it as the
baseline, so the cost of verification is a ratio measured in the same run. When the client runtime
can build its in-memory snapshot from a bundle (``anvil_client._snapshot.compile_bundle``; templates
compile lazily on first use), that is timed too, and so is an update whose every template changed
(``previous={}, check=True``: every template compiled and checked before the swap).

Memory: ``tracemalloc`` peak while loading and what the verified bundle keeps alive afterwards.
"""

from __future__ import annotations

import gc
import gzip
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from anvil_client.bundle import build_bundle, canonical_json, load_bundle
from bench.common import log, seconds_left, summarize, write_result

SIZES = (10, 1_000, 10_000)
# Repeats per size: enough samples for a p99 on small bundles, bounded time on large ones.
REPEATS = {10: 300, 1_000: 30, 10_000: 7}
# Compiling every template is ~1,000x slower than verifying it: fewer repeats keep the run bounded.
SNAPSHOT_REPEATS = {10: 30, 1_000: 3, 10_000: 1}
SNAPSHOT_BUDGET_MS = 30_000.0
SERIES_BUDGET_S = 6.0  # per timed series; a loaded machine gets fewer samples rather than an overrun

_PLAIN = (
    "You are the support assistant of {{ company }}. Greet {{ name }} warmly and help with their question "
    "about the {{ plan }} plan. Keep answers short, precise and friendly; never invent features, prices or "
    "dates. If you are unsure, say so and offer to connect the customer with a human colleague. Use plain "
    "language, avoid jargon, and end with one clear next step the customer can take today. Topic {index}."
)
_LOGIC = (
    "You are the support assistant of {{ company }}. {% if plan == 'enterprise' %}Address {{ name }} as a "
    "priority customer and mention their dedicated account manager.{% else %}Greet {{ name }} warmly.{% endif %} "
    "Keep answers short, precise and friendly; never invent features, prices or dates. If you are unsure, "
    "say so and offer a human colleague. End with one next step. Topic {index}."
)


def make_prompts(count: int) -> list[dict[str, Any]]:
    prompts = []
    for index in range(count):
        template = (_LOGIC if index % 4 == 3 else _PLAIN).replace("{index}", str(index))
        prompts.append(
            {
                "id": f"area{index // 100:03d}.topic{index:05d}.message",
                "template": template,
                "description": f"Support answer for topic {index}, used by the help widget.",
                "parameters": [
                    {"name": "company", "type": "string", "required": True},
                    {"name": "name", "type": "string", "required": True},
                    {"name": "plan", "type": "string", "required": False, "default": "free"},
                ],
                "metadata": {"model": "gpt-4o-mini", "temperature": 0.2},
            }
        )
    return prompts


def make_bundle_bytes(count: int, *, set_slug: str = "core") -> bytes:
    bundle = build_bundle(
        forge="http://127.0.0.1:8000",
        organisation="acme",
        project="support-bot",
        environment="production",
        set_slug=set_slug,
        version=1,
        approval="approved",
        prompts=make_prompts(count),
        created_at="2026-11-25T10:00:00Z",
        created_by="editor",
        approved_at="2026-11-25T10:05:00Z",
        approved_by="reviewer",
        published_at="2026-11-25T10:06:00Z",
        published_by="editor",
    )
    return canonical_json(bundle)


def _time_ms(
    call: Callable[[], Any], repeats: int, *, warm: bool = True, budget_s: float = SERIES_BUDGET_S
) -> list[float]:
    """``repeats`` timings in ms (fewer, but at least 3, when the series would pass ``budget_s``)."""
    samples = []
    gc.collect()  # once per series, not per sample: a collection per sample would flush the CPU caches
    started = time.perf_counter()
    for index in range(repeats + (1 if warm else 0)):  # a warm-up run is dropped
        begin = time.perf_counter()
        call()
        samples.append((time.perf_counter() - begin) * 1000)
        if index >= 3 and time.perf_counter() - started > budget_s:
            break
    return samples[1:] if warm else samples


def _snapshot_builder() -> Callable[[Any], Any] | None:
    """The client runtime's "verified bundle -> compiled prompts" step (``_snapshot.compile_bundle``)."""
    try:
        from anvil_client._snapshot import compile_bundle
    except ImportError:
        return None
    return compile_bundle


def measure(count: int, previous_compile_ms_per_prompt: float | None = None) -> dict[str, Any]:
    data = make_bundle_bytes(count)
    repeats = REPEATS[count]
    parse = _time_ms(lambda: json.loads(data), repeats)
    load = _time_ms(lambda: load_bundle(data), repeats)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    bundle = load_bundle(data)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(bundle.prompts) == count

    result: dict[str, Any] = {
        "prompts": count,
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, 6)),
        "json_parse_ms": summarize(parse),
        "load_verify_ms": summarize(load),
        "ratio_load_verify_vs_parse": round(summarize(load)["median"] / summarize(parse)["median"], 2),
        "load_verify_us_per_prompt": round(summarize(load)["median"] * 1000 / count, 2),
        "memory_peak_mb": round((peak - before) / 1e6, 3),
        "memory_retained_mb": round((retained - before) / 1e6, 3),
    }
    build = _snapshot_builder()
    if build is not None:
        try:
            snapshot_ms = _time_ms(lambda: build(bundle), SNAPSHOT_REPEATS[count], warm=count < 1_000)
            result["snapshot_build_ms"] = summarize(snapshot_ms)
        except Exception as exc:  # the client's internal API moved: record it rather than fail the figure
            result["snapshot_build_error"] = f"{type(exc).__name__}: {exc}"
        # An update whose every template changed is compiled (and checked) before it is swapped in.
        estimate = previous_compile_ms_per_prompt * count if previous_compile_ms_per_prompt else 0.0
        budget_ms = min(SNAPSHOT_BUDGET_MS, (seconds_left() - 20) * 1000)
        if estimate > budget_ms:
            result["update_compile_skipped"] = (
                f"estimated {estimate / 1000:.0f} s from the smaller bundle, over the {budget_ms / 1000:.0f} s "
                "left in the budget of this benchmark"
            )
            result["update_compile_ms_estimated"] = round(estimate, 1)
        else:
            try:
                compile_ms = _time_ms(
                    lambda: build(bundle, previous={}, check=True), SNAPSHOT_REPEATS[count], warm=count < 1_000
                )
                result["update_compile_ms"] = summarize(compile_ms)
                result["update_compile_ms_per_prompt"] = round(summarize(compile_ms)["median"] / count, 3)
            except Exception as exc:
                result["update_compile_error"] = f"{type(exc).__name__}: {exc}"
    return result


def main() -> int:
    sizes: dict[str, Any] = {}
    for count in SIZES:
        log(f"content_scale: {count} prompts")
        previous = sizes[str(SIZES[SIZES.index(count) - 1])] if count != SIZES[0] else {}
        sizes[str(count)] = measure(count, previous.get("update_compile_ms_per_prompt"))
        log(f"  {json.dumps(sizes[str(count)])}")
    path = write_result(
        "content_scale",
        {
            "method": "load_bundle(bytes) = JSON parse + schema check of every prompt + both sha256 digests; "
            "json.loads alone is the same-run baseline; memory by tracemalloc",
            "sizes": sizes,
        },
    )
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
