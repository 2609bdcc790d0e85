"""The benchmark harness measures what it says: statistics, result files, the Langfuse stub."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from bench import common
from bench.langfuse_stub import LangfuseStub


def test_percentile_uses_nearest_rank_so_p99_of_100_samples_is_the_99th():
    samples = list(range(1, 101))
    assert common.percentile(samples, 99) == 99
    assert common.percentile(samples, 50) == 50
    assert common.percentile([7.0], 99) == 7.0


def test_summarize_reports_median_and_p99_and_count():
    summary = common.summarize([5, 1, 3, 2, 4])
    assert summary["n"] == 5
    assert summary["median"] == 3
    assert summary["p99"] == 5
    assert summary["min"] == 1


def test_percentile_of_nothing_is_refused():
    with pytest.raises(ValueError, match="no samples"):
        common.percentile([], 50)


def test_write_result_records_machine_versions_and_date(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    path = common.write_result("demo", {"value_ns": 12.5})
    data = json.loads(path.read_text())
    assert data["value_ns"] == 12.5
    meta = data["meta"]
    assert meta["python"]["version"].count(".") == 2
    assert meta["machine"]["cpus"] >= 1
    assert meta["packages"]["Jinja2"]
    assert meta["date"].startswith("20")
    assert "loaded" in meta["load"]


def test_write_result_merge_keeps_columns_another_script_wrote(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    common.write_result("hot", {"dict_ns": 100})
    common.write_result("hot", {"langfuse_ns": 900}, merge=True, meta_key="meta_langfuse")
    data = json.loads((tmp_path / "hot.json").read_text())
    assert data["dict_ns"] == 100
    assert data["langfuse_ns"] == 900
    assert "meta" in data and "meta_langfuse" in data


def _get(url: str, auth: bool = True) -> tuple[int, dict]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(b"pk:sk").decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_langfuse_stub_serves_a_text_prompt_in_the_public_api_shape_and_counts_requests():
    with LangfuseStub({"welcome": "Hello {{ name }}"}) as stub:
        status, body = _get(stub.url + "/api/public/v2/prompts/welcome?label=production")
        assert status == 200
        assert body["type"] == "text"
        assert body["prompt"] == "Hello {{ name }}"
        assert body["name"] == "welcome"
        assert isinstance(body["version"], int)
        assert body["labels"] == ["production"]
        assert stub.total_requests() == 1


def test_langfuse_stub_refuses_unknown_prompts_and_missing_auth():
    with LangfuseStub({"welcome": "Hi"}) as stub:
        assert _get(stub.url + "/api/public/v2/prompts/nope")[0] == 404
        assert _get(stub.url + "/api/public/v2/prompts/welcome", auth=False)[0] == 401
        assert stub.total_requests() == 2


def test_langfuse_cached_path_compiles_the_same_text_without_network_calls():
    pytest.importorskip("langfuse", reason="benchmark-only dependency (requirements/bench.txt)")
    from bench.langfuse_path import measure_langfuse

    result = measure_langfuse(
        "Hi {{ name }}, plan {{ plan }}.", {"name": "Ada", "plan": "pro"}, expected="Hi Ada, plan pro.",
        loops=20, repeats=2,
    )
    assert result["warmup_requests"] == 1
    assert result["requests_while_timing"] == 0
    assert result["summary_ns"]["median"] > 0


def test_content_scale_bundles_load_and_verify():
    from anvil_client.bundle import load_bundle
    from bench.content_scale import make_bundle_bytes

    bundle = load_bundle(make_bundle_bytes(25))
    assert len(bundle.prompts) == 25
    assert all(len(p.template) > 300 for p in bundle.prompts)


class _HeartbeatSSE:
    """A tiny chunked SSE server: 200, one event, then a heartbeat comment every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stop = threading.Event()
        self.stop_event = stop
        self.authorizations: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.authorizations.append(self.headers.get("Authorization", ""))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(text: str) -> None:
                    data = text.encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()

                try:
                    chunk('retry: 1000\n\nevent: release\nid: 1\ndata: {"set": "core"}\n\n')
                    while not stop.wait(interval):
                        chunk(": heartbeat\n\n")
                except OSError:
                    return

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()


def test_stream_client_worker_holds_streams_and_measures_heartbeat_gaps():
    import subprocess
    import sys
    import time

    server = _HeartbeatSSE(interval=0.2)
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_clients", server.url, "anvil_live_x", "0.2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=common.ROOT,
    )
    try:
        def ask(command: str) -> dict:
            worker.stdin.write(command + "\n")
            worker.stdin.flush()
            return json.loads(worker.stdout.readline())

        opened = ask("open 5")
        assert opened["open"] == 5 and opened["failed"] == 0
        ask("mark")
        time.sleep(1.1)
        stats = ask("stats")
        assert stats["open"] == 5
        assert stats["events"] == 5
        assert stats["overdue"] == 0
        assert stats["gap_s"]["n"] >= 5 * 3
        assert 0.15 < stats["gap_s"]["median"] < 0.4
        assert server.authorizations[0] == "Bearer anvil_live_x"
        assert ask("quit") == {"bye": True}
    finally:
        worker.kill()
        server.close()


def test_load_generator_counts_requests_and_statuses_and_stops_at_its_bound():
    from bench import loadgen

    with LangfuseStub({"welcome": "Hi"}) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        auth = {"Authorization": "Basic " + base64.b64encode(b"pk:sk").decode()}
        result = loadgen.run(
            "127.0.0.1", port, "/api/public/v2/prompts/welcome", headers=auth,
            connections=4, duration_s=5.0, warmup_s=0.0, max_requests=200,
        ).as_dict()
        missing = loadgen.run("127.0.0.1", port, "/api/public/v2/prompts/nope", headers=auth,
                              connections=2, duration_s=3.0, warmup_s=0.0, max_requests=20).as_dict()
    assert result["statuses"] == {"200": 200}
    assert result["requests"] == 200
    assert result["rps"] > 0 and result["seconds"] < 5.0
    assert result["latency_ms"]["n"] == 200
    assert missing["statuses"] == {"404": 20}


def test_report_rewrites_only_the_generated_block_and_says_what_is_missing(tmp_path, monkeypatch):
    from bench import report

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# Benchmarks\n\nhand-written intro\n\n{report.START}\nold tables\n{report.END}\n\nhand-written end\n"
    )
    monkeypatch.setattr(report, "DOC", doc)
    common.write_result(
        "startup",
        {"median_ms": 42.0, "network_calls": 0, "network_calls_after": 1, "runs": 3,
         "launch_to_first_prompt_ms": common.summarize([40.0, 42.0, 50.0])},
    )
    report.main([])
    text = doc.read_text()
    assert "hand-written intro" in text and "hand-written end" in text
    assert "old tables" not in text
    assert "| launch → first prompt (headline) | 42.0 | 50.0 | < 100 ms |" in text
    assert "_Not measured: `bench/results/api.json` is missing._" in text


def test_profile_summary_ranks_functions_by_share_of_samples(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setattr(common, "PROFILES_DIR", tmp_path)
    monkeypatch.setattr(common, "ROOT", tmp_path)
    (tmp_path / "demo.txt").write_text(
        "main (app.py:1);handle (/x/site-packages/django/db/models/query.py:10);execute (db.py:5) 30\n"
        "main (app.py:1);render (/x/site-packages/jinja2/environment.py:3) 10\n"
    )
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    summary = common.finish_profile(done, "demo")
    assert summary["samples"] == 40
    assert summary["inclusive_percent"]["handle (django/db/models/query.py)"] == 75.0
    assert summary["inclusive_percent"]["render (jinja2/environment.py)"] == 25.0
    assert summary["self_percent"]["execute (db.py)"] == 75.0
