"""Processes of one instance against a real FORGE (uvicorn on a loopback port): check-ins over HTTP with
process ids, goodbyes, and the pages that group processes under their instance and count instances."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.forge_process import DEMO_PASSWORD, ForgeProcess

pytestmark = pytest.mark.integration


def make_token(forge: ForgeProcess) -> str:
    output = forge.cli(
        "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "procs"
    )
    return output.splitlines()[0].strip()


def sign_in(forge: ForgeProcess, username: str = "viewer") -> httpx.Client:
    client = httpx.Client(base_url=forge.url, timeout=20)
    client.get("/login/")
    response = client.post(
        "/login/",
        data={"username": username, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def instance_blocks(body: str) -> dict[str, str]:
    return dict(re.findall(r'<tbody data-testid="instance" data-instance-id="([^"]+)">(.*?)</tbody>', body, re.S))


def process_ids(block: str) -> list[int]:
    return [int(pid) for pid in re.findall(r'data-testid="process" data-process-id="(\d+)"', block)]


def test_processes_of_one_instance_check_in_over_http_and_are_shown_under_it(make_forge):
    forge = make_forge()
    token = make_token(forge)
    api = httpx.Client(base_url=forge.url, timeout=20, headers={"Authorization": f"Bearer {token}"})

    def checkin(**fields) -> httpx.Response:
        body = {"name": "web-1", "host": "web-1.internal", "client_version": "0.2.0", "versions": {"core": 1}}
        return api.post("/api/v1/live/checkin", json={**body, **fields})

    # Eight workers of one application start at once (a pre-fork server): their first check-ins race.
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(lambda pid: checkin(instance_id="web-1-app", process_id=pid, checkin_interval=5), range(101, 109))
        )
    assert [answer.status_code for answer in answers] == [200] * 8, [answer.text for answer in answers]
    assert answers[0].json()["ok"] is True and answers[0].json()["checkin_interval"] == 60

    # Three exit cleanly; a goodbye for a process the FORGE never saw is harmless.
    for pid in (102, 104, 106):
        assert checkin(instance_id="web-1-app", process_id=pid, goodbye=True).status_code == 200
    assert checkin(instance_id="web-1-app", process_id=999, goodbye=True).status_code == 200
    assert checkin(instance_id="never-seen", process_id=1, goodbye=True).status_code == 200
    # One reports a different version: the instance shows the mix.
    assert checkin(instance_id="web-1-app", process_id=108, versions={"core": 2}).status_code == 200
    # An older client: no process fields at all.
    assert checkin(instance_id="5f0c2b7e", process_count=1, name="legacy").status_code == 200
    refused = checkin(instance_id="web-1-app", process_id="108")
    assert refused.status_code == 400 and refused.json()["error"].startswith("process_id:")
    assert "not a string" in refused.json()["error"]

    viewer = sign_in(forge)
    # Check-ins are recorded in batches by the FORGE's writer thread, so the page lags the last one by the
    # batch window plus one write (longer on a loaded machine): read it until the last check-in shows.
    deadline = time.monotonic() + 15
    while True:
        page = viewer.get("/o/acme/instances/")
        assert page.status_code == 200
        blocks = instance_blocks(page.text)
        if "5f0c2b7e" in blocks or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(blocks) == {"web-1-app", "5f0c2b7e"}, "one row group per instance; the unknown goodbye made none"
    assert process_ids(blocks["web-1-app"]) == [101, 103, 105, 107, 108]
    assert "core v1 on 4 of 5 processes, v2 on 1" in blocks["web-1-app"]
    assert "(5 processes)" in blocks["web-1-app"]
    assert process_ids(blocks["5f0c2b7e"]) == [] and "(1 process)" in blocks["5f0c2b7e"]

    project = viewer.get("/o/acme/p/support-bot/").text
    production = re.search(r'<th scope="row">production.*?</tr>', project, re.S)
    assert production is not None
    counts = production.group(0)
    # v1 is live in production: every process of both instances runs it or newer.
    assert ">2 running<" in counts and "behind" not in counts, "two instances of six processes, counted once each"
