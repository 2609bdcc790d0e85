"""The prompt on the current OpenTelemetry span and ``last_prompt()`` (issue 17), with the SDK's in-memory
exporter. OpenTelemetry is never a dependency of the client: these tests skip without it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forge_stub import make_bundle

import anvil_client
from anvil_client._cache import write_disk_bundle
from anvil_client.bundle import load_bundle

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[anvil_client.Client]:
    bundle = load_bundle(make_bundle("core", 3))
    write_disk_bundle(tmp_path / "cache", bundle)
    made = anvil_client.Client(cache_dir=tmp_path / "cache", sync=False)
    made.start()
    EXPORTER.clear()
    yield made
    made.close()


def expected() -> dict[str, Any]:
    return {
        "anvil.prompt.id": "welcome.message",
        "anvil.prompt.set": "core",
        "anvil.prompt.version": 3,
        "anvil.prompt.digest": make_bundle("core", 3)["content_digest"],
    }


def test_prompt_sets_its_id_set_version_and_digest_on_the_recording_span(client: anvil_client.Client) -> None:
    tracer = trace.get_tracer("host")
    with tracer.start_as_current_span("llm-call"):
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    [span] = EXPORTER.get_finished_spans()
    assert {k: v for k, v in span.attributes.items() if k.startswith("anvil.")} == expected()


def test_no_span_no_attributes_and_no_error(client: anvil_client.Client) -> None:
    assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    assert EXPORTER.get_finished_spans() == ()


def test_a_non_recording_span_is_left_alone(client: anvil_client.Client) -> None:
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    with trace.use_span(span):
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    assert EXPORTER.get_finished_spans() == ()


def test_last_prompt_is_per_thread_and_task(client: anvil_client.Client) -> None:
    client.prompt("welcome.message", name="Ada")
    assert anvil_client.last_prompt() == expected()

    async def fresh_task() -> Any:
        return anvil_client.last_prompt()

    async def main() -> Any:
        # A task started from a context with no prompt yet sees none.
        return await asyncio.get_running_loop().run_in_executor(None, anvil_client.last_prompt)

    assert asyncio.run(main()) is None
    assert asyncio.run(fresh_task()) == expected()  # asyncio.run copies this thread's context


def test_the_client_never_imports_opentelemetry_itself() -> None:
    import subprocess

    code = "import anvil_client, sys; anvil_client.Client(sync=False); print('opentelemetry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_guarded_render_names_the_previous_version_it_served(client: anvil_client.Client) -> None:
    needs_plan = make_bundle(
        "core", 4,
        [{"id": "welcome.message", "template": "Hi {{ name }} on {{ plan }}",
          "parameters": [{"name": "name", "type": "string", "required": True},
                         {"name": "plan", "type": "string", "required": True}]}],
    )
    with client._lock:
        client._apply(load_bundle(needs_plan), "forge", write=False)
    with trace.get_tracer("host").start_as_current_span("llm-call"):
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    [span] = EXPORTER.get_finished_spans()
    assert span.attributes["anvil.prompt.version"] == 3
    assert anvil_client.last_prompt() == expected()


def test_a_context_found_quiet_is_not_looked_at_again_and_a_recording_span_still_gets_the_prompt(
    client: anvil_client.Client,
) -> None:
    sampled_out = TracerProvider(sampler=ALWAYS_OFF).get_tracer("host").start_span("request")
    assert not sampled_out.is_recording()
    with trace.use_span(sampled_out):
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
        quiet = client._quiet
        assert quiet is not None and trace.get_current_span(quiet) is sampled_out
        assert client.prompt("welcome.message", name="Bob") == "Hello Bob (v3)"
    with trace.get_tracer("host").start_as_current_span("llm-call"):
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    with trace.use_span(sampled_out):  # the same span in a new context: looked at, still quiet
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    [span] = EXPORTER.get_finished_spans()
    assert {k: v for k, v in span.attributes.items() if k.startswith("anvil.")} == expected()


def test_a_span_that_ended_is_not_annotated(client: anvil_client.Client) -> None:
    span = trace.get_tracer("host").start_span("done")
    span.end()
    EXPORTER.clear()
    with trace.use_span(span):
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    assert not span.attributes or not any(k.startswith("anvil.") for k in span.attributes)
