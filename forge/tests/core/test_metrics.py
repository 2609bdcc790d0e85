from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from anvil_forge.core import metrics

pytestmark = pytest.mark.django_db(transaction=True)


async def _hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


def _get(path: str, **headers: str) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=metrics.Instrumented(_hello))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(run())


def test_metrics_are_off_without_a_token(settings):
    settings.ANVIL_METRICS_TOKEN = ""
    assert _get("/metrics", Authorization="Bearer anything").status_code == 404


def test_metrics_answer_only_the_bearer_token(settings):
    settings.ANVIL_METRICS_TOKEN = "s3cret-metrics"
    assert _get("/metrics").status_code == 401
    assert _get("/metrics", Authorization="Bearer wrong").status_code == 401
    assert _get("/metrics", Authorization="Basic s3cret-metrics").status_code == 401
    assert _get("/metrics", Authorization="Bearer s3cret-metrics").status_code == 200


def test_the_exposition_parses_and_names_each_series(settings):
    settings.ANVIL_METRICS_TOKEN = "t"
    _get("/api/v1/manage/anything")
    _get("/o/acme/")
    answer = _get("/metrics", Authorization="Bearer t")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(answer.text)}
    for name in (
        "anvil_http_request_duration_seconds", "anvil_checkins", "anvil_streams_opened", "anvil_open_streams",
        "anvil_publish_to_acknowledgement_seconds", "anvil_webhook_deliveries", "anvil_webhook_deliveries_given_up",
        "anvil_publishes", "anvil_instances", "anvil_webhook_queue",
    ):
        assert name in families, name
    kinds = {s.labels.get("kind") for s in families["anvil_http_request_duration_seconds"].samples}
    assert {"api", "page"} <= kinds
    assert all(s.labels["process"] == metrics.PROCESS for s in families["anvil_open_streams"].samples)


def test_the_sample_grafana_dashboard_uses_only_series_the_forge_exposes(settings):
    import json
    import re
    from pathlib import Path

    settings.ANVIL_METRICS_TOKEN = "t"
    exposed = {s.name for f in text_string_to_metric_families(_get("/metrics", Authorization="Bearer t").text)
               for s in f.samples}
    dashboard = json.loads((Path(__file__).parents[3] / "docs" / "grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\banvil_\w+", target["expr"])}
    assert used and used <= exposed, used - exposed
