"""A crowd of LIVE clients reconnecting at once: backoff with jitter spreads them, and all come back.

Two parts. The client's own backoff schedule for 1,000 clients, computed by the real sync loop (its stream
attempts replaced by an outcome and its waits recorded instead of slept), shows how the crowd spreads
after a FORGE restart and while the FORGE stays away. Then a bounded real burst: 120 clients in two host
application processes follow a real FORGE, which crashes and restarts; every client reconnects, the reconnections are
spread out, and every client then takes the next publish.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter

import pytest

import anvil_client
from anvil_client._client import _SyncLink
from anvil_client._sync import SyncThread
from tests.reliability.conftest import V2_GREETING, make_token, publish

CROWD = 1_000


def schedule(*, attempts: int, outcome: tuple[float, float | None], **config: float) -> list[list[float]]:
    """The waits of ``CROWD`` clients before each of ``attempts`` reconnections, from the real sync loop."""
    random.seed(8)
    waits: list[list[float]] = []
    for _ in range(CROWD):
        client = anvil_client.Client(forge_url="http://127.0.0.1:1", token="anvil_live_" + "s" * 43, **config)
        sync = SyncThread(_SyncLink(client), client.config)
        mine: list[float] = []
        tries = iter(range(attempts))

        def stream_once(sync=sync, tries=tries) -> tuple[float, float | None]:
            if next(tries, None) is None:
                sync._stop.set()
            return outcome

        sync._sync_releases = lambda initial: None  # type: ignore[method-assign]
        sync._stream_once = stream_once  # type: ignore[method-assign]
        sync._idle = mine.append  # type: ignore[method-assign]
        sync._run()
        waits.append(mine[:attempts])
    return waits


def _largest_share(times: list[float], window: float) -> float:
    """The largest fraction of ``times`` that falls in one window of ``window`` seconds."""
    buckets = Counter(int(t / window) for t in times)
    return max(buckets.values()) / len(times)


def test_a_thousand_clients_cut_off_by_a_restart_spread_their_reconnections_over_the_retry_hint():
    # The FORGE restarting ends every stream with its retry hint (2 s): each client waits a jittered hint.
    waits = schedule(attempts=1, outcome=(120.0, 2.0))
    first = [w[0] for w in waits]
    assert min(first) >= 0.9 and max(first) <= 3.1
    assert max(first) - min(first) >= 0.8, "the crowd is spread over most of a second at least"
    assert _largest_share(first, 0.1) <= 0.15, "no tenth of a second takes more than 15% of the crowd"


def test_a_thousand_clients_facing_a_forge_that_stays_away_back_off_exponentially_and_stay_spread():
    waits = schedule(attempts=7, outcome=(0.0, None), backoff_initial=1.0, backoff_max=30.0)
    for n, expected in enumerate([1, 2, 4, 8, 16, 30, 30]):
        nth = [w[n] for w in waits]
        assert expected / 2 - 0.01 <= min(nth) and max(nth) <= expected + 0.01, (n, min(nth), max(nth))
        assert statistics.pstdev(nth) >= expected / 10, f"attempt {n + 1} is jittered"
        # Jitter is uniform over half the delay: ten slices of it hold about a tenth of the crowd each.
        assert _largest_share(nth, expected / 20) <= 0.15, f"attempt {n + 1}: no crowding in a slice of its delay"
    # Where the attempts land in time: the n-th wave of the crowd is spread over half its delay.
    for n in range(1, 7):
        arrivals = [sum(w[: n + 1]) for w in waits]
        assert max(arrivals) - min(arrivals) >= 0.5 * min(2**n, 30), f"wave {n + 1} is spread"


@pytest.mark.integration
def test_a_hundred_and_twenty_real_clients_come_back_after_a_forge_restart_spread_out_and_take_the_next_publish(
    make_forge, host_app, tmp_path
):
    forge = make_forge(env={"ANVIL_RELEASE_POLL_SECONDS": "0.5", "ANVIL_STREAM_HEARTBEAT_SECONDS": "2"})
    token = make_token(forge)
    bootstrap = _bootstrap(forge, token, tmp_path / "prompts.json")  # shipped with the app: never NotReady
    per_process, processes = 60, 2
    client = {"startup_timeout": 0, "connect_timeout": 10, "backoff_initial": 1.0, "backoff_max": 4.0,
              "heartbeat_interval": 2, "read_timeout": 6, "poll_interval": 60, "checkin_interval": 60,
              "state_check_interval": 0.5}
    apps = [
        host_app(forge_url=forge.url, token=token, cache_dir=tmp_path / f"p{i}", bootstrap=bootstrap,
                 clients=per_process, interval=0.2, client=client, max_seconds=90).start()
        for i in range(processes)
    ]

    def connected_now() -> int:
        count = 0
        for app in apps:
            state: dict[int, bool] = {}
            for event in list(app.events):
                if event["event"] in ("connected", "disconnected"):
                    state[event["client"]] = event["event"] == "connected"
            count += sum(state.values())
        return count

    _wait(lambda: connected_now() == per_process * processes, 60, "every client connected")
    forge.kill()  # a crash: every stream ends at once
    _wait(lambda: connected_now() == 0, 20, "every client saw the FORGE go")
    restarted = time.monotonic()
    forge.start()
    _wait(lambda: connected_now() == per_process * processes, 60, "every client reconnected")
    reconnections = [
        e["t"] - restarted for app in apps for e in app.events if e["event"] == "connected" and e["t"] > restarted
    ]
    reconnections.sort()
    spread = reconnections[int(len(reconnections) * 0.9)] - reconnections[int(len(reconnections) * 0.1)]
    assert spread >= 0.3, f"reconnections came all at once: p10-p90 within {spread:.2f} s"

    publish(forge, 2)
    for app in apps:
        _wait(lambda app=app: len({e["client"] for e in app.events
                                   if e["event"] == "render" and V2_GREETING in (e.get("text") or "")}) == per_process,
              30, "every client took the publish")
        assert app.errors() == []


def _bootstrap(forge, token: str, path):
    import urllib.request

    from anvil_client._cache import write_bootstrap

    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(forge.url + "/api/v1/live/bundles/core", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return write_bootstrap(path, [response.read()])


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
