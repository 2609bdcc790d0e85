"""Webhooks and /metrics against real FORGE processes: a loopback receiver gets signed deliveries, retried after it
fails twice; two processes on one PostgreSQL database never send one delivery twice; `release.acknowledged` arrives
once when two real LIVE client processes have applied a release (also with each on its own FORGE process on
PostgreSQL); /metrics parses with the Prometheus client's own parser."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anvil_forge.webhooks.signing import verify
from forge.tests.webhooks.receiver import Receiver
from tests.forge_process import postgres_url
from tests.integration.test_distribution_stream import make_token, publish

pytestmark = pytest.mark.integration

METRICS_TOKEN = "metrics-" + "m" * 32
FAST = {
    "ANVIL_PEER_PRIVATE_NETWORKS": "127.0.0.1/32",  # the receiver is on loopback, refused by default
    "ANVIL_WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "ANVIL_WEBHOOK_POLL_SECONDS": "0.1",
    "ANVIL_METRICS_TOKEN": METRICS_TOKEN,
}


def add_webhook(forge, url: str, events: list[str], name: str = "it") -> str:
    """A webhook of the demo organisation, made through the services in the FORGE's own database; its secret."""
    script = (
        "from anvil_forge.accounts.models import Organisation;"
        "from anvil_forge.accounts.permissions import SystemActor;"
        "from anvil_forge.webhooks.services import webhook_create;"
        f"w, s = webhook_create(actor=SystemActor('test'), organisation=Organisation.objects.get(slug='acme'),"
        f" name={name!r}, url={url!r}, events={events!r});"
        "print(s)"
    )
    return forge.cli("manage", "shell", "-c", script).strip().splitlines()[-1]


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def scrape(forge, token: str | None = METRICS_TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(forge.url + "/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_publish_reaches_the_receiver_signed_after_it_failed_twice(make_forge):
    forge = make_forge(env=FAST)
    with Receiver(statuses=[500, 502]) as receiver:
        secret = add_webhook(forge, receiver.url, ["release.publish"])
        publish(forge, 2)
        wait_for(lambda: len(receiver.received) >= 3)
        time.sleep(0.5)  # nothing more comes
    assert len(receiver.received) == 3
    for got in receiver.received:
        assert verify(secret, got.body, got.headers["anvil-signature"])
        assert got.headers["anvil-event"] == "release.publish"
    assert len({got.headers["anvil-delivery"] for got in receiver.received}) == 1
    payload = json.loads(receiver.received[-1].body)
    assert (payload["organisation"], payload["project"], payload["data"]["version"]) == ("acme", "support-bot", 2)

    status, text = scrape(forge)
    assert status == 200
    values = samples(text)
    process = next(dict(labels)["process"] for (name, labels) in values if name == "anvil_open_streams")
    assert values[("anvil_webhook_deliveries_total", (("process", process), ("result", "ok")))] == 1
    assert values[("anvil_webhook_deliveries_total", (("process", process), ("result", "failed")))] == 2
    assert values[("anvil_webhook_queue", (("state", "delivered"),))] == 1
    assert values[("anvil_publishes_total", ())] >= 2
    assert any(name == "anvil_http_request_duration_seconds_count" for name, _ in values)


def test_metrics_answer_only_the_bearer_token_and_are_off_without_one(make_forge):
    forge = make_forge(env=FAST)
    assert scrape(forge, None)[0] == 401
    assert scrape(forge, "wrong")[0] == 401
    off = make_forge(env={}, database_url=forge.database_url)
    assert scrape(off)[0] == 404


def test_an_instance_acknowledgement_is_timed_in_the_histogram(make_forge):
    forge = make_forge(env=FAST)
    token = make_token(forge)
    checkin = json.dumps({
        "instance_id": "it-1", "name": "web-1", "host": "h", "client_version": "1.0", "mode": "ACCEPTING",
        "versions": {"core": 1},
    }).encode()
    request = urllib.request.Request(
        forge.url + "/api/v1/live/checkin", data=checkin, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status < 300

    def acknowledged() -> bool:
        values = samples(scrape(forge)[1])
        return any(name == "anvil_publish_to_acknowledgement_seconds_count" and value >= 1
                   for (name, _), value in values.items())

    wait_for(acknowledged)
    values = samples(scrape(forge)[1])
    assert sum(v for (n, _), v in values.items() if n == "anvil_checkins_total") >= 1


@pytest.mark.postgres
@pytest.mark.skipif(
    postgres_url() is None,
    reason="needs PostgreSQL: two FORGE processes claiming one queue (SKIP LOCKED); SQLite runs one FORGE process",
)
def test_two_forge_processes_on_postgresql_never_send_one_delivery_twice(make_forge):
    first = make_forge(env=FAST)
    second = make_forge(env=FAST, database_url=first.database_url)
    with Receiver() as receiver:
        for number in range(8):
            add_webhook(first, receiver.url + f"/{number}", ["token.create"], name=f"it-{number}")
        for number in range(5):
            second.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "live",
                       "--name", f"t{number}")
        wait_for(lambda: len(receiver.received) >= 40, timeout=30)
        time.sleep(1.0)
    ids = Counter(got.headers["anvil-delivery"] for got in receiver.received)
    assert len(ids) == 40 and set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1]
    senders = {forge.url: samples(scrape(forge)[1]) for forge in (first, second)}
    sent = [sum(v for (n, labels), v in values.items() if n == "anvil_webhook_deliveries_total")
            for values in senders.values()]
    assert sum(sent) == 40


CLIENT = """
import sys, time, anvil_client
client = anvil_client.Client(forge_url=sys.argv[1], token=sys.argv[2], cache_dir=sys.argv[3], instance_name=sys.argv[4],
                             checkin_interval=0.5, heartbeat_interval=1, backoff_initial=0.1, backoff_max=0.5)
seen = None
while True:
    version = client.status()["versions"].get("core")
    if version != seen:
        print("core", version, flush=True)
        seen = version
    time.sleep(0.05)
"""


def _two_clients_apply_a_release(forges, tmp_path) -> None:
    import os
    import subprocess
    import sys

    token = make_token(forges[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    clients = [
        subprocess.Popen([sys.executable, "-c", CLIENT, forge.url, token, str(tmp_path / name), name],
                         stdout=subprocess.PIPE, text=True, env=env)
        for forge, name in zip(forges, ("web-1", "web-2"), strict=True)
    ]
    try:
        with Receiver() as receiver:
            secret = add_webhook(forges[0], receiver.url, ["release.acknowledged"])
            for client in clients:
                assert client.stdout.readline().split()[:2] == ["core", "1"]
            time.sleep(1.5)  # both have checked in (every 0.5 s) before the publish
            publish(forges[-1], 2)
            for client in clients:
                assert client.stdout.readline().split()[:2] == ["core", "2"]
            wait_for(lambda: len(receiver.received) >= 1)
            time.sleep(1.5)  # more check-ins of the same version: nothing more comes
    finally:
        for client in clients:
            client.terminate()
            client.wait(10)
    [got] = receiver.received
    assert verify(secret, got.body, got.headers["anvil-signature"])
    body = json.loads(got.body)
    assert body["event"] == "release.acknowledged" and body["actor"] == "Anvil"
    assert body["data"]["version"] == 2 and body["data"]["instances"] == 2
    assert body["data"]["environment"] == "production"


def test_every_instance_acknowledged_reaches_the_receiver_once_after_two_live_clients_apply_it(make_forge, tmp_path):
    _two_clients_apply_a_release([make_forge(env=FAST)] * 2, tmp_path)


@pytest.mark.postgres
@pytest.mark.skipif(postgres_url() is None, reason="needs PostgreSQL: two FORGE processes on one database")
def test_every_instance_acknowledged_is_sent_once_with_two_forge_processes_on_postgresql(make_forge, tmp_path):
    """Each client checks in to its own FORGE process; both record acknowledgements, one event is sent."""
    first = make_forge(env=FAST)
    _two_clients_apply_a_release([first, make_forge(env=FAST, database_url=first.database_url)], tmp_path)
