"""Maximum-age closes spread over time whatever the ratio of the maximum age to the heartbeat (issue 18).

Thirty streams opened together, a maximum age of 2 s and a heartbeat of 15 s (so no heartbeat tick falls
inside the test): each stream ends at a moment of its own, over at least a fifth of the age, with a retry hint.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_distribution_stream import SSEStream, make_token

pytestmark = pytest.mark.integration

STREAMS = 30
MAX_AGE = 2.0


def test_streams_opened_together_end_spread_over_their_maximum_age_with_a_long_heartbeat(make_forge):
    forge = make_forge(
        env={
            "ANVIL_STREAM_MAX_AGE_SECONDS": str(MAX_AGE),
            "ANVIL_STREAM_HEARTBEAT_SECONDS": "15",
            "ANVIL_RELEASE_POLL_SECONDS": "60",
        }
    )
    token = make_token(forge)
    streams = []
    for _ in range(STREAMS):
        streams.append(SSEStream(forge.url, token).open())
        streams[-1].opened = time.monotonic()  # type: ignore[attr-defined]
    try:
        for stream in streams:
            stream.next(kind="release")
        lived = sorted(stream.wait_closed(timeout=10) - stream.opened for stream in streams)  # type: ignore[attr-defined]
    finally:
        for stream in streams:
            stream.close()

    assert all(len(stream.retries) == 2 for stream in streams), "a retry hint at the start and one at the end"
    assert lived[0] > MAX_AGE * 0.6 and lived[-1] < MAX_AGE + 1.5, lived
    assert lived[-1] - lived[0] >= MAX_AGE * 0.2, f"closes bunched together: {lived}"
    # Not one tick: no twentieth of the age (a sixth of the spread) holds half of the closes.
    window = MAX_AGE * 0.05
    most = max(sum(1 for other in lived if start <= other < start + window) for start in lived)
    assert most < STREAMS // 2, (most, lived)
