"""Rebalancing after a rolling restart (issue 18): three FORGE processes on one PostgreSQL database.

Every client first reaches one process (as a load balancer's stickiness leaves them after a restart); the
processes tell each other their stream counts and the crowded one sheds streams with a retry hint until it is
near the mean. Shed clients come back through a round-robin "load balancer" (the test's own) and keep taking
publishes. The test's clock runs ten times faster than the defaults: a 1 s tick (default 10 s), and clients wait
a quarter of the retry hint they are sent (0.5-3 s, so the tick stays longer than a reconnect, as by default).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time

import pytest

from tests.forge_process import postgres_url
from tests.integration.test_distribution_stream import SSEStream, make_token, publish

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.skipif(
        postgres_url() is None, reason="needs PostgreSQL: several FORGE processes share one database only there"
    ),
]

CLIENTS = 30
MARGIN = 0.2
REBALANCE = {
    "ANVIL_STREAM_REBALANCE_SECONDS": "1",
    "ANVIL_STREAM_REBALANCE_MARGIN": str(MARGIN),
    "ANVIL_STREAM_HEARTBEAT_SECONDS": "1",
    "ANVIL_RELEASE_POLL_SECONDS": "60",  # publishes travel by NOTIFY only
    "ANVIL_LOG_LEVEL": "INFO",
}


class RoundRobin:
    """The load balancer: each new connection goes to the next process."""

    def __init__(self, urls: list[str]) -> None:
        self._cycle = itertools.cycle(urls)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return next(self._cycle)


class Client(threading.Thread):
    """A LIVE instance's stream: reconnects through the balancer after the retry hint, resumes by Last-Event-ID."""

    def __init__(self, balancer: RoundRobin, token: str, first: str, retry_scale: float) -> None:
        super().__init__(daemon=True)
        self.balancer, self.token, self.url, self.retry_scale = balancer, token, first, retry_scale
        self.where: str | None = None
        self.versions: list[int] = []
        self.last_id: str | None = None
        self.reconnects = 0
        self.stopping = threading.Event()
        self.stream: SSEStream | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                stream = SSEStream(self.url, self.token, last_event_id=self.last_id).open()
            except OSError:
                stream = None
            if stream is None or stream.status != 200:
                time.sleep(0.2)
                self.url = self.balancer.next()
                continue
            self.stream, self.where = stream, self.url
            while not self.stopping.is_set():
                try:
                    event = stream.events.get(timeout=0.1)
                except queue.Empty:
                    if stream.ended_at is not None and stream.events.empty():
                        break
                    continue
                if event.event == "release":
                    self.versions.append(event.json()["version"])
                    self.last_id = event.id
            self.where = None
            if self.stopping.is_set():
                break
            self.reconnects += 1
            time.sleep((stream.retries[-1] if stream.retries else 2000) / 1000 * self.retry_scale)
            self.url = self.balancer.next()

    def stop(self) -> None:
        self.stopping.set()
        if self.stream is not None:
            self.stream.close()


def counts(clients: list[Client], urls: list[str]) -> list[int]:
    return [sum(1 for client in clients if client.where == url) for url in urls]


def test_a_process_holding_every_stream_sheds_toward_the_mean_and_shed_clients_keep_taking_publishes(make_forge):
    forges = [make_forge(env=REBALANCE)]
    forges += [make_forge(env=REBALANCE, database_url=forges[0].database_url) for _ in range(2)]
    urls = [forge.url for forge in forges]
    token = make_token(forges[0])
    balancer = RoundRobin(urls)
    clients = [Client(balancer, token, first=urls[0], retry_scale=0.25) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        deadline = time.monotonic() + 20
        while counts(clients, urls)[0] < CLIENTS or not all(client.versions for client in clients):
            assert time.monotonic() < deadline, counts(clients, urls)
            time.sleep(0.05)
        started = time.monotonic()
        timeline = []
        threshold = (1 + MARGIN) * CLIENTS / len(urls) + 1  # one stream of slack for a client reconnecting
        while True:
            now = counts(clients, urls)
            timeline.append((round(time.monotonic() - started, 1), now))
            if sum(now) == CLIENTS and max(now) <= threshold:
                break
            assert time.monotonic() - started < 30, f"not rebalanced within 30 s: {timeline[::10]}"
            time.sleep(0.1)
        rebalanced = time.monotonic() - started
        print(f"rebalanced in {rebalanced:.1f} s: {timeline[::5]} ... {timeline[-1]}")
        assert "rebalancing:" in forges[0].log()
        assert all("rebalancing:" not in forge.log() for forge in forges[1:]), "only the crowded process sheds"

        time.sleep(3)  # settled: nobody sheds back and forth
        settled = counts(clients, urls)
        assert sum(settled) == CLIENTS and max(settled) <= threshold, settled
        assert sum(client.reconnects for client in clients) < 2 * CLIENTS

        publish(forges[1], 2)
        deadline = time.monotonic() + 10
        while not all(client.versions[-1] == 2 for client in clients):
            assert time.monotonic() < deadline, [client.versions for client in clients if client.versions[-1] != 2]
            time.sleep(0.05)
        assert all(client.versions.count(2) == 1 for client in clients), "each client took the publish once"
    finally:
        for client in clients:
            client.stop()
