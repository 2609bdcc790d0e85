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
