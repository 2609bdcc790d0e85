"""Regenerate the tables of ``docs/benchmarks.md`` from ``bench/results/*.json``.

The page keeps its hand-written text (method, what limits each figure, next steps); only the part
between ``<!-- bench:tables:start -->`` and ``<!-- bench:tables:end -->`` is rewritten, so a run of
``make bench`` leaves the page showing the figures it just measured. ``python -m bench.report``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, read_result

DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- bench:tables:start -->"
END = "<!-- bench:tables:end -->"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # About three significant digits whatever the magnitude.
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.{max(digits, 2)}f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _run_line(name: str, data: dict[str, Any] | None) -> list[Any]:
    meta = (data or {}).get("meta") or {}
    load = meta.get("load") or {}
    git = meta.get("git") or {}
    return [
        f"`{name}.json`",
        meta.get("date"),
        (git.get("commit") or "")[:10] + (" (+changes)" if git.get("dirty") else ""),
        f"{_fmt(load.get('loadavg_1m_at_start'), 2)} → {_fmt(load.get('loadavg_1m_at_end'), 2)}",
        load.get("loaded"),
    ]


def hot_path(data: dict[str, Any]) -> list[str]:
    def row(label: str, key: str, ratio_key: str | None, target: str) -> list[Any]:
        summary = data.get(key.replace("_ns", "")) if isinstance(data.get(key.replace("_ns", "")), dict) else None
        p99 = data.get(key.replace("_ns", "_p99_ns")) or _get(summary, "p99")
        return [label, data.get(key), p99, data.get(ratio_key) if ratio_key else None, target]

    rows = [
        row("dict lookup + `str.format_map` (baseline)", "dict_format_map_ns", None, ""),
        row("raw compiled Jinja2 `Template.render` (baseline)", "jinja2_raw_ns", None, ""),
        row("`prompt(id, variables)`, substitution-only template", "anvil_substitution_ns",
            "ratio_substitution_vs_dict", "≤ 1.5x dict"),
        row("`prompt(id, name=..., plan=..., ticket=...)` (keywords), same template",
            "anvil_substitution_keywords_ns", "ratio_kwargs_vs_dict", "≤ 0.7x dict"),
        row("`anvil_client.prompt(id, name=..., plan=..., ticket=...)` (the README's form: the default client)",
            "anvil_module_keywords_ns", "ratio_module_kwargs_vs_dict", "≤ 0.7x dict"),
        row("`anvil_client.prompt(id, variables)`", "anvil_module_dict_ns", "ratio_module_dict_vs_dict", "-"),
        row("`anvil_client.prompt(id, variables, fallback=...)`", "anvil_module_dict_fallback_ns",
            "ratio_module_fallback_vs_dict", "-"),
        row("`prompt(id, **variables)`, same template", "anvil_substitution_kwargs_ns",
            "ratio_kwargs_unpacked_vs_dict", "-"),
        row("`prompt()`, template with logic", "anvil_logic_ns", "ratio_logic_vs_jinja2", "≤ 1.15x Jinja2"),
        row("raw compiled Jinja2, ~10 KB template with 50 variables (baseline)", "jinja2_raw_large_ns", None, ""),
        row("`prompt()`, the ~10 KB template", "anvil_logic_large_ns", "ratio_logic_large_vs_jinja2",
            "≤ 1.2x Jinja2"),
        row("raw Jinja2 with plain-dict globals, template with logic (ratio: `prompt()` to it, the limits' own "
            "cost)", "jinja2_dict_globals_ns", "ratio_logic_vs_jinja2_dict_globals", "-"),
        row("raw Jinja2 with plain-dict globals, ~10 KB template (ratio: `prompt()` to it)",
            "jinja2_dict_globals_large_ns", "ratio_logic_large_vs_jinja2_dict_globals", "-"),
        row("Langfuse `get_prompt(...).compile(...)`, cached", "langfuse_ns", "ratio_langfuse_vs_anvil",
            "≥ 3x slower than Anvil"),
    ]
    # A tracer provider set (issue 17); ratio: the same call by a client without one, in the same rounds.
    states = (("idle", "no span current", "≤ 1.1x the same call without"),
              ("sampled_out", "a sampled-out span current", "≤ 1.1x the same call without"),
              ("recording", "a recording span current (attributes set on every call)", "-"))
    for case, label, ratio in (("anvil_substitution", "`prompt(id, variables)`", "ratio_otel"),
                               ("anvil_substitution_keywords", "`prompt(id, name=...)`", "ratio_otel_keywords"),
                               ("anvil_logic", "`prompt()` with logic", "ratio_otel_logic")):
        for state, what, target in states:
            if data.get(f"{case}_otel_{state}_ns") is not None:
                rows.append(row(f"{label}, OpenTelemetry provider set, {what}", f"{case}_otel_{state}_ns",
                                f"{ratio}_{state}_vs_plain", target))
    return _table(["path", "median ns/call", "p99 ns/call", "ratio", "target"], rows)


def propagation(data: dict[str, Any]) -> list[str]:
    rows = []
    for count, figures in sorted((data.get("streams") or {}).items(), key=lambda kv: int(kv[0])):
        if not isinstance(figures, dict):
            continue
        rows.append(
            [
                int(count),
                figures.get("streams_open"),
                figures.get("p50_ms"),
                figures.get("p99_ms"),
                figures.get("max_ms"),
                figures.get("samples"),
                figures.get("missing"),
                {1000: "p99 < 100 ms", 10000: "p99 <= 250 ms"}.get(int(count), ""),
            ]
        )
    lines = _table(["streams", "open", "p50 ms", "p99 ms", "max ms", "deliveries", "missing", "target"], rows)
    memory = data.get("idle_stream_memory")
    if isinstance(memory, dict):
        lines += [
            "",
            f"Memory per idle stream in this run: {_fmt(memory.get('kb_per_stream'))} KB "
            f"({_fmt(memory.get('rss_before_mb'))} MB before any stream, {_fmt(memory.get('rss_after_mb'))} MB "
            f"with {_fmt(memory.get('streams'))}).",
        ]
    method = data.get("method")
    if isinstance(method, dict):
        lines += ["", "Method: " + "; ".join(f"{k}: {v}" for k, v in method.items()) + "."]
    return lines


def propagation_clients(data: dict[str, Any]) -> list[str]:
    rows = []
    for count, step in sorted((data.get("steps") or {}).items(), key=lambda kv: int(kv[0])):
        latency = step.get("latency_ms") or {}
        callback = step.get("on_update_callback_ms") or {}
        rows.append(
            [int(count), latency.get("n"), latency.get("median"), latency.get("p99"), latency.get("max"),
             callback.get("median"), callback.get("p99"), step.get("missing")]
        )
    lines = _table(
        ["client processes", "samples", "new text p50 ms", "p99 ms", "max ms", "on_update p50 ms", "p99 ms",
         "missing"],
        rows,
    )
    lines += ["", f"Method: {data.get('method')}."]
    return lines


def idle_streams(data: dict[str, Any]) -> list[str]:
    rows = []
    for count, step in sorted((data.get("streams") or {}).items(), key=lambda kv: int(kv[0])):
        rows.append(
            [
                int(count),
                step.get("streams_open"),
                step.get("rss_mb"),
                step.get("kb_per_stream"),
                _get(step, "heartbeat_gap_s", "median"),
                _get(step, "heartbeat_gap_s", "p99"),
                _get(step, "heartbeat_gap_s", "max"),
                step.get("overdue_connections"),
                step.get("heartbeats_on_time"),
                step.get("forge_cpu_percent_idle"),
                step.get("forge_cpu_ms_per_accept"),
                "< 500 MB" if int(count) == 10000 else "",
            ]
        )
    lines = _table(
        [
            "streams",
            "open",
            "FORGE RSS MB",
            "KB/stream",
            "heartbeat gap p50 s",
            "p99 s",
            "max s",
            "overdue",
            "heartbeats on time",
            "FORGE CPU % idle",
            "FORGE CPU ms/accept",
            "target",
        ],
        rows,
    )
    lines.append("")
    lines.append(f"Baseline RSS with no stream: {_fmt(data.get('baseline_rss_mb'))} MB.")
    return lines


def startup(data: dict[str, Any]) -> list[str]:
    rows = [
        ["launch → first prompt (headline)", _get(data, "launch_to_first_prompt_ms", "median"),
         _get(data, "launch_to_first_prompt_ms", "p99"), "< 100 ms"],
        ["`import anvil_client`", _get(data, "import_ms", "median"), _get(data, "import_ms", "p99"), "< 50 ms"],
        ["first `prompt()` (loads the cache)", _get(data, "first_prompt_ms", "median"),
         _get(data, "first_prompt_ms", "p99"), ""],
        ["interpreter alone (`python -c pass`, baseline)", _get(data, "interpreter_only_ms", "median"),
         _get(data, "interpreter_only_ms", "p99"), ""],
        ["launch → first prompt, FORGE accepts and never answers", _get(data, "forge_hangs",
         "launch_to_first_prompt_ms", "median"), _get(data, "forge_hangs", "launch_to_first_prompt_ms", "p99"),
         "< 100 ms"],
    ]
    lines = _table(["step", "median ms", "p99 ms", "target"], rows)
    lines.append("")
    lines.append(
        f"Network calls before the first prompt: **{_fmt(data.get('network_calls'))}**; in the 0.3 s after it "
        f"(background sync finding the FORGE down): {_fmt(data.get('network_calls_after'))}. "
        f"Runs: {_fmt(data.get('runs'))}; "
        f"ratio to the bare interpreter: {_fmt(data.get('ratio_vs_interpreter_only'), 2)}x."
    )
    return lines


def content_scale(data: dict[str, Any]) -> list[str]:
    rows = []
    for count, size in sorted((data.get("sizes") or {}).items(), key=lambda kv: int(kv[0])):
        rows.append(
            [
                int(count),
                round(size["bytes"] / 1024, 1),
                round(size["gzip_bytes"] / 1024, 1),
                _get(size, "json_parse_ms", "median"),
                _get(size, "load_verify_ms", "median"),
                _get(size, "load_verify_ms", "p99"),
                size.get("ratio_load_verify_vs_parse"),
                size.get("memory_peak_mb"),
                size.get("memory_retained_mb"),
                _get(size, "snapshot_build_ms", "median"),
                _get(size, "update_compile_ms", "median") or (
                    f"~{_fmt(size['update_compile_ms_estimated'] / 1000)} s (estimated)"
                    if size.get("update_compile_ms_estimated") else None
                ),
            ]
        )
    return _table(
        [
            "prompts",
            "bundle KiB",
            "gzip KiB",
            "json.loads ms (baseline)",
            "load+verify ms p50",
            "p99",
            "ratio vs parse",
            "peak MB",
            "retained MB",
            "client snapshot ms (lazy)",
            "update, all templates compiled, ms",
        ],
        rows,
    )


def api(data: dict[str, Any]) -> list[str]:
    rows = []
    for database, results in (data.get("databases") or {}).items():
        if "skipped" in results:
            rows.append([database, "(skipped: " + results["skipped"] + ")", None, None, None, None, None])
            continue
        ratios = results.get("ratios_vs_starlette") or {}
        for name in ("starlette_before", "starlette_after", "healthz", "bundle_304", "bundle_200", "releases"):
            figures = results.get(name) or {}
            if not figures:
                continue
            rows.append(
                [
                    database,
                    name,
                    figures.get("rps"),
                    _get(figures, "latency_ms", "median"),
                    _get(figures, "latency_ms", "p99"),
                    figures.get("forge_cpu_ms_per_request"),
                    ratios.get(name),
                    API_GOALS.get(name, ""),
                ]
            )
    lines = _table(
        ["database", "request", "req/s", "latency p50 ms", "p99 ms", "FORGE CPU ms/req", "ratio vs Starlette", "goal"],
        rows,
    )
    pages = []
    for database, results in (data.get("databases") or {}).items():
        for name, figures in (_get(results, "pages", "pages") or {}).items():
            pages.append([database, name, figures.get("path"), figures.get("median"), figures.get("p90")])
    if pages:
        lines += ["", "Pages (signed in, one request at a time):", ""]
        lines += _table(["database", "page", "path", "latency p50 ms", "p90 ms"], pages)
    return lines


API_GOALS = {"bundle_304": "≥ 0.3", "bundle_200": "≥ 0.25", "releases": "≥ 0.2"}


def propagation_users(data: dict[str, Any]) -> list[str]:
    rows = []
    for path in ("web", "cli"):
        for database, figures in (data.get(path) or {}).items():
            if "skipped" in figures:
                rows.append([path, database, "(skipped)", None, None, None, None])
                continue
            rows.append(
                [
                    path,
                    database,
                    figures.get("p50_ms"),
                    figures.get("p99_ms"),
                    _get(figures, "until_published_ms", "median"),
                    figures.get("delivery_p99_ms"),
                    "p99 ≤ 150" if path == "web" else "delivery p99 ≤ 100",
                ]
            )
    return _table(
        [
            "action",
            "database",
            "p50 ms",
            "p99 ms",
            "action until the release row, p50 ms",
            "release row → new text, p99 ms",
            "goal",
        ],
        rows,
    )


def journey(data: dict[str, Any]) -> list[str]:
    rows = [
        ["actions to submit (sign in, change a word, submit)", data.get("actions_to_submit"), "≤ 4"],
        ["actions to publish (approve from the inbox, publish, confirm)", data.get("actions_to_publish"), "≤ 6"],
        ["confirm click → every instance acknowledged on the page, p50 s", data.get("ack_seconds_p50"), "≤ 1"],
        ["same, slowest of the rounds, s", data.get("ack_seconds_max"), "≤ 1"],
        ["slowest instance applied after the click, s", data.get("ack_apply_seconds_max"), "premise ≤ 0.3"],
    ]
    lines = _table(["the Context Engineer's journey (Chromium, real FORGE and clients)", "measured", "goal"], rows)
    lines += [
        "",
        f"{data.get('ack_rounds', '-')} rounds of {data.get('ack_instances', '-')} LIVE client processes. "
        "Taken by `python -m bench journey` (the browser tests `tests/browser/test_live_pages.py` and "
        "`tests/browser/test_action_budget.py`, which also assert the budgets).",
    ]
    return lines


SECTIONS: tuple[tuple[str, str, Callable[[dict[str, Any]], list[str]]], ...] = (
    ("hot_path", "Hot path", hot_path),
    ("propagation", "Propagation (publish → the release event on every stream)", propagation),
    ("propagation_clients", "Propagation to real clients (publish → `prompt()` returns the new text)",
     propagation_clients),
    ("idle_streams", "Idle streams (one FORGE process)", idle_streams),
    ("startup", "Start-up from the disk cache, FORGE down", startup),
    ("content_scale", "Scale of content", content_scale),
    ("api", "FORGE API throughput", api),
    ("propagation_users", "Propagation from the user's action (web confirm, `anvil-forge publish`)", propagation_users),
    ("journey", "The Context Engineer's journey (issue 14)", journey),
)


def render() -> str:
    lines = ["<!-- Generated by `python -m bench.report` from bench/results/*.json; edits here are overwritten. -->"]
    lines.append("")
    first_meta = next((d["meta"] for n, *_ in SECTIONS if (d := read_result(n)) and "meta" in d), None)
    if first_meta:
        machine = first_meta.get("machine", {})
        lines.append(
            f"Machine: {machine.get('cpu_model')} ({machine.get('cpus')} CPUs, "
            f"{_fmt(machine.get('mem_total_mb'))} MB), "
            f"{machine.get('platform')}; Python {first_meta.get('python', {}).get('version')}."
        )
        packages = ", ".join(f"{k} {v}" for k, v in (first_meta.get("packages") or {}).items() if v)
        lines += ["", f"Packages: {packages}.", ""]
    lines.append("### Runs")
    lines.append("")
    lines += _table(
        ["results file", "date (UTC)", "commit", "load avg 1 min start → end", "machine loaded"],
        [_run_line(name, read_result(name)) for name, *_ in SECTIONS],
    )
    for name, title, render_section in SECTIONS:
        lines += ["", f"### {title}", ""]
        data = read_result(name)
        if not data:
            lines.append(f"_Not measured: `bench/results/{name}.json` is missing._")
            continue
        try:
            lines += render_section(data)
        except (KeyError, TypeError, ValueError) as exc:
            lines.append(f"_Could not render `{name}.json`: {type(exc).__name__}: {exc}._")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    doc: Path = DOC
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n## Figures\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(head + START + "\n" + render() + END + tail)
    print(f"updated {doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
