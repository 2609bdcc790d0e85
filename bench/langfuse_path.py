"""The Langfuse column of the hot-path figure: ``get_prompt(...).compile(...)`` from the SDK's cache.

The Langfuse Python SDK (a benchmark-only dependency, ``requirements/bench.txt``) is pointed at a
loopback stub of its public API (:mod:`bench.langfuse_stub`), with tracing off. One ``get_prompt``
warms its prompt cache (TTL an hour, so nothing expires while timing); the timed loop is then what
an application calls per request: ``langfuse.get_prompt(name).compile(**variables)``. The stub's
request counter proves the loop never went to the network.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bench.common import summarize, time_per_call_ns
from bench.langfuse_stub import LangfuseStub

PROMPT_NAME = "support-welcome"
CACHE_TTL_SECONDS = 3600


def langfuse_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("langfuse")
    except Exception:
        return None


@contextlib.contextmanager
def langfuse_call(
    template: str, variables: Mapping[str, Any], *, expected: str | None = None
) -> Iterator[LangfuseCall]:
    """A warmed Langfuse ``get_prompt(...).compile(...)`` call against a running stub, for timing loops.

    ``template`` uses ``{{ name }}`` placeholders (the syntax Jinja2 and Langfuse share for plain
    substitution). When ``expected`` is given the compiled text must equal it, so the SDK is measured
    doing the same work as the other columns. On exit, raises if the timed calls reached the stub.
    """
    from langfuse import Langfuse

    logging.getLogger("langfuse").setLevel(logging.ERROR)
    with LangfuseStub({PROMPT_NAME: template}) as stub:
        client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=stub.url, tracing_enabled=False)
        try:
            compiled = client.get_prompt(PROMPT_NAME, cache_ttl_seconds=CACHE_TTL_SECONDS).compile(**variables)
            if expected is not None and compiled != expected:
                raise RuntimeError(
                    f"Langfuse compiled a different text than the baseline:\n{compiled!r}\n!=\n{expected!r}"
                )
            get_prompt = client.get_prompt
            call = LangfuseCall(
                call=lambda: get_prompt(PROMPT_NAME, cache_ttl_seconds=CACHE_TTL_SECONDS).compile(**variables),
                warmup_requests=stub.total_requests(),
                stub=stub,
            )
            yield call
            call.requests_while_timing = stub.total_requests() - call.warmup_requests
        finally:
            client.shutdown()
    if call.requests_while_timing:
        raise RuntimeError(
            f"the timed Langfuse calls made {call.requests_while_timing} requests: its cache did not answer"
        )


@dataclass
class LangfuseCall:
    call: Callable[[], Any]
    warmup_requests: int
    stub: LangfuseStub
    requests_while_timing: int = 0


def measure_langfuse(
    template: str,
    variables: Mapping[str, Any],
    *,
    expected: str | None = None,
    loops: int = 2000,
    repeats: int = 15,
) -> dict[str, Any]:
    """Time the cached ``get_prompt(...).compile(...)`` path alone; samples in ns per call, and checks."""
    with langfuse_call(template, variables, expected=expected) as lf:
        samples = time_per_call_ns(lf.call, loops=loops, repeats=repeats)
    return {
        "samples_ns": samples,
        "summary_ns": summarize(samples, 1),
        "warmup_requests": lf.warmup_requests,
        "requests_while_timing": lf.requests_while_timing,
        "langfuse_version": langfuse_version(),
    }
