"""Every main page of the demo data renders in under 200 ms (median of several requests, test client).

The budget is checked on the CPU time of this process (the test client and SQLite run in it), so other
work on a shared machine does not make the test flaky; the wall-clock time is printed beside it.
"""

from __future__ import annotations

import statistics
import time

import pytest
from django.contrib.auth import get_user_model

from anvil_forge.prompts import demo

pytestmark = pytest.mark.django_db

BUDGET_MS = 200
BASE = f"/o/{demo.ORGANISATION}/p/{demo.PROJECT}/s/{demo.PROMPT_SET}/"
PAGES = [
    f"/o/{demo.ORGANISATION}/",
    f"/o/{demo.ORGANISATION}/p/{demo.PROJECT}/",
    BASE,
    BASE + "prompts/greeting.welcome/",
    BASE + "versions/",
    BASE + "diff/?a=1&b=2",
    BASE + "versions/2/publish/production/",
    f"/o/{demo.ORGANISATION}/tokens/",
    f"/o/{demo.ORGANISATION}/instances/",
    f"/o/{demo.ORGANISATION}/audit/",
]


def test_main_pages_of_the_demo_data_render_within_budget(client):
    demo.demo_seed(password="anvil-demo-password")
    client.force_login(get_user_model().objects.get(username="owner"))
    slow = {}
    for path in PAGES:
        assert client.get(path).status_code == 200, path  # warm: templates compiled once per process
        cpu, wall = [], []
        for _ in range(5):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            client.get(path)
            cpu.append((time.process_time() - start_cpu) * 1000)
            wall.append((time.perf_counter() - start_wall) * 1000)
        median = statistics.median(cpu)
        print(f"{median:6.1f} ms CPU {statistics.median(wall):6.1f} ms wall  {path}")
        if median > BUDGET_MS:
            slow[path] = round(median, 1)
    assert not slow, f"pages slower than {BUDGET_MS} ms: {slow}"
