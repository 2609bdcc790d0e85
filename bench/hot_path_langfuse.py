"""The Langfuse column of ``bench/results/hot_path.json``: ``langfuse_ns`` and ``ratio_langfuse_vs_anvil``.

Measured in one process on the hot-path benchmark's own substitution-only template (~400 characters,
3 variables; ``bench.hot_path``), interleaved round by round so machine load hits every case alike:

* ``dict[id].format_map(variables)``: the floor, as in the main hot-path figure;
* ``client.prompt(id, variables)``: the same ``anvil_client.Client`` the main figure builds (disk cache,
  no sync);
* ``langfuse.get_prompt(name, cache_ttl_seconds=3600).compile(**variables)``: the Langfuse Python SDK
  against a loopback stub of its API, cache warmed, tracing off (:mod:`bench.langfuse_path`); the stub
  counts requests and the run fails if a timed call reached it.

The texts are checked equal before timing. ``ratio_langfuse_vs_anvil`` = Langfuse ns per call / Anvil
ns per call, medians of this run (target: at least 3). The keys are merged into the file ``bench.hot_path``
wrote; this run's metadata goes under ``meta_langfuse``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.common import log, summarize, time_per_call_ns, write_result
from bench.hot_path import SUBSTITUTION, SUBSTITUTION_ID, VARIABLES, _client
from bench.langfuse_path import langfuse_call, langfuse_version

LOOPS = 2_000
REPEATS = 30


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    loops, repeats = (300, 5) if "--quick" in args else (LOOPS, REPEATS)
    table = {SUBSTITUTION_ID: SUBSTITUTION.replace("{{ ", "{").replace(" }}", "}")}
    expected = table[SUBSTITUTION_ID].format_map(VARIABLES)
    log("hot_path_langfuse: dict + format_map, anvil prompt(), Langfuse get_prompt().compile(), interleaved")
    with tempfile.TemporaryDirectory(prefix="anvil-bench-hot-") as tmp:
        client = _client(Path(tmp))
        try:
            with langfuse_call(SUBSTITUTION, VARIABLES, expected=expected) as langfuse:
                prompt = client.prompt
                calls = {
                    "dict_format_map": lambda: table[SUBSTITUTION_ID].format_map(VARIABLES),
                    "anvil_substitution": lambda: prompt(SUBSTITUTION_ID, VARIABLES),
                    "langfuse": langfuse.call,
                }
                for name, call in calls.items():
                    if call() != expected:
                        raise RuntimeError(f"{name} rendered a different text:\n{call()!r}\n!=\n{expected!r}")
                    time_per_call_ns(call, loops=loops, repeats=1, warmup=0)
                samples: dict[str, list[float]] = {name: [] for name in calls}
                for _ in range(repeats):
                    for name, call in calls.items():
                        samples[name] += time_per_call_ns(call, loops=loops, repeats=1, warmup=0)
        finally:
            client.close()
    summaries = {name: summarize(values, 1) for name, values in samples.items()}
    lf, anvil, floor = summaries["langfuse"], summaries["anvil_substitution"], summaries["dict_format_map"]
    figures = {
        "langfuse_ns": lf["median"],
        "langfuse_p99_ns": lf["p99"],
        "ratio_langfuse_vs_anvil": round(lf["median"] / anvil["median"], 2),
        "langfuse": {
            "method": "one process, the hot-path substitution template and variables, cases interleaved round by "
            "round; Langfuse SDK against a loopback stub of GET /api/public/v2/prompts/{name}, cache warmed "
            "(1 request), tracing off, 0 requests while timing; ns per call = one sample of loops calls",
            "langfuse_version": langfuse_version(),
            "loops": loops,
            "repeats": repeats,
            "summaries_ns": summaries,
            "ratio_anvil_vs_dict_same_run": round(anvil["median"] / floor["median"], 3),
            "stub_requests_warmup": langfuse.warmup_requests,
            "stub_requests_while_timing": langfuse.requests_while_timing,
        },
    }
    path = write_result("hot_path", figures, merge=True, meta_key="meta_langfuse")
    log(
        f"hot_path_langfuse: dict {floor['median']} ns, anvil {anvil['median']} ns, langfuse {lf['median']} ns, "
        f"ratio langfuse/anvil {figures['ratio_langfuse_vs_anvil']}"
    )
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
