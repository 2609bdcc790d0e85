"""Signals (renders, errors, fallbacks, guarded renders, outcomes per version), the render guard, the
instance header and the FORGE's check-in interval, against the stub FORGE over loopback."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from forge_stub import StubForge, make_bundle

import anvil_client
from anvil_client import Config, ConfigError, MissingVariables

MakeClient = Callable[..., anvil_client.Client]

PLAN_PROMPT = [
    {
        "id": "welcome.message",
        "template": "Hello {{ name }} on {{ plan }} (v2)",
        "parameters": [
            {"name": "name", "type": "string", "required": True},
            {"name": "plan", "type": "string", "required": True},
        ],
    }
]


def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def signals_sent(stub: StubForge) -> dict[str, dict[str, dict[str, Any]]]:
    """Every version's counts summed over the check-ins the stub accepted."""
    total: dict[str, dict[str, dict[str, Any]]] = {}
    for checkin in list(stub.checkins):
        for set_slug, versions in (checkin.get("signals") or {}).items():
            for version, item in versions.items():
                into = total.setdefault(set_slug, {}).setdefault(version, {})
                for key, value in item.items():
                    if isinstance(value, int):
                        into[key] = into.get(key, 0) + value
                    elif key == "errors":
                        errors = into.setdefault("errors", {})
                        for kind, n in value.items():
                            errors[kind] = errors.get(kind, 0) + n
                    elif key == "outcomes":
                        outcomes = into.setdefault("outcomes", {"ok": 0, "failed": {}})
                        outcomes["ok"] += value["ok"]
                        for kind, n in value["failed"].items():
                            outcomes["failed"][kind] = outcomes["failed"].get(kind, 0) + n
                    elif key == "problems":
                        into.setdefault("problems", []).extend(value)
    return total


def checkin_now(client: anvil_client.Client, stub: StubForge) -> None:
    """A check-in made after everything the test did so far has been received (twice: one built earlier may be
    on its way when asked; the sync thread makes one at a time)."""
    for _ in range(2):
        count = len(stub.checkins)
        client._sync.request_checkin()
        assert eventually(lambda: len(stub.checkins) > count)


def test_renders_errors_fallbacks_and_outcomes_are_counted_per_version_and_sent_once(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    for _ in range(5):
        client.prompt("welcome.message", name="Ada")
    with pytest.raises(MissingVariables):
        client.prompt("welcome.message")
    assert client.prompt("welcome.message", fallback="Hi") == "Hi"
    assert client.prompt("welcome.message", name=3, fallback="Hi") == "Hi"  # a number for a string parameter
    client.report("welcome.message", True)
    client.report("welcome.message", False, "LLM error!")
    anvil_client.Client.report(client, "welcome.message", False, "llm_error")
    client.report("no.such.prompt", False, "x")  # ignored, never raises
    checkin_now(client, stub)
    assert signals_sent(stub) == {
        "core": {
            "1": {
                "renders": 8,
                "errors": {"invalid_variable": 1, "missing_variables": 2},
                "fallbacks": 2,
                "outcomes": {"ok": 1, "failed": {"llm_error": 2}},
                "problems": [
                    {"prompt": "welcome.message", "kind": "invalid_variable", "detail": "name", "count": 1,
                     "guarded": 0},
                    {"prompt": "welcome.message", "kind": "missing_variables", "detail": "name", "count": 2,
                     "guarded": 0},
                ],
            }
        }
    }
    # Accepted: the next check-ins say only what happened since.
    client.prompt("welcome.message", name="Ada")
    checkin_now(client, stub)
    assert [c["signals"] for c in stub.checkins if "signals" in c][-1] == {"core": {"1": {"renders": 1}}}
    assert signals_sent(stub)["core"]["1"]["renders"] == 9
    checkin_now(client, stub)
    assert signals_sent(stub)["core"]["1"]["renders"] == 9


def test_counts_of_a_check_in_the_forge_refused_are_sent_with_the_next(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    client.prompt("welcome.message", name="Ada")
    checkin_now(client, stub)
    before = len(stub.checkins)
    stub.token = "anvil_live_" + "x" * 43  # the FORGE refuses the next check-ins (401)
    client.prompt("welcome.message", name="Ada")
    client.prompt("welcome.message", name="Ada")
    client._sync.request_checkin()
    time.sleep(0.5)
    assert len(stub.checkins) == before
    from forge_stub import TOKEN

    stub.token = TOKEN
    client.prompt("welcome.message", name="Ada")
    checkin_now(client, stub)
    assert [c["signals"] for c in stub.checkins if "signals" in c][-1] == {"core": {"1": {"renders": 3}}}
    assert signals_sent(stub)["core"]["1"]["renders"] == 4


def test_a_version_replaced_between_check_ins_is_still_reported(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    client.prompt("welcome.message", name="Ada")
    checkin_now(client, stub)
    client.prompt("welcome.message", name="Ada")
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2)
    assert eventually(lambda: client.status()["versions"] == {"core": 2})
    assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v2)"
    checkin_now(client, stub)
    sent = signals_sent(stub)["core"]
    assert sent["1"]["renders"] == 2 and sent["2"]["renders"] == 1


def test_the_render_guard_serves_the_previous_text_when_a_new_version_needs_a_variable_not_passed(
    stub: StubForge, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2, bundle=make_bundle("core", 2, PLAN_PROMPT))
    assert eventually(lambda: client.status()["versions"] == {"core": 2})
    with caplog.at_level(logging.WARNING, logger="anvil_client"):
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v1)"
        assert client.prompt("welcome.message", name="Ada") == "Hello Ada (v1)"
    # The new version renders for callers that pass what it needs.
    assert client.prompt("welcome.message", name="Ada", plan="Pro") == "Hello Ada on Pro (v2)"
    warnings = [r for r in caplog.records if "render guard" in r.getMessage()]
    assert len(warnings) == 1 and "version 2" in warnings[0].getMessage()
    checkin_now(client, stub)
    version_2 = signals_sent(stub)["core"]["2"]
    assert version_2["renders"] == 3
    assert version_2["guarded"] == 2
    assert version_2["errors"] == {"missing_variables": 2}
    assert version_2["problems"] == [
        {"prompt": "welcome.message", "kind": "missing_variables", "detail": "plan", "count": 2, "guarded": 2}
    ]
    assert "fallbacks" not in version_2


def test_without_the_render_guard_the_error_is_raised(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub, render_guard=False)
    client.prompt("welcome.message", name="Ada")
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2, bundle=make_bundle("core", 2, PLAN_PROMPT))
    assert eventually(lambda: client.status()["versions"] == {"core": 2})
    with pytest.raises(MissingVariables):
        client.prompt("welcome.message", name="Ada")
    assert client.prompt("welcome.message", name="Ada", fallback="Hi") == "Hi"
    checkin_now(client, stub)
    version_2 = signals_sent(stub)["core"]["2"]
    assert version_2["errors"] == {"missing_variables": 2} and version_2["fallbacks"] == 1
    assert "guarded" not in version_2


def test_no_render_guard_on_a_fresh_start_with_no_previous_version(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 2, bundle=make_bundle("core", 2, PLAN_PROMPT))
    client = make_client(stub)
    with pytest.raises(MissingVariables):
        client.prompt("welcome.message", name="Ada")


def test_the_render_guard_keeps_only_the_version_right_before(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    client.prompt("welcome.message", name="Ada")
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2, bundle=make_bundle("core", 2, PLAN_PROMPT))
    assert eventually(lambda: client.status()["versions"] == {"core": 2})
    stub.publish("core", 3, bundle=make_bundle("core", 3, [{**PLAN_PROMPT[0], "template": "{{ name }} {{ plan }} v3"}]))
    assert eventually(lambda: client.status()["versions"] == {"core": 3})
    with pytest.raises(MissingVariables):  # version 2 needed plan too: no text to fall back on
        client.prompt("welcome.message", name="Ada")


def test_every_request_of_the_sync_thread_names_the_instance(stub: StubForge, make_client: MakeClient) -> None:
    stub.inline = False  # the bundle is fetched too
    stub.publish("core", 1)
    client = make_client(stub)
    client.prompt("welcome.message", name="Ada")
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2)
    assert eventually(lambda: client.prompt("welcome.message", name="Ada") == "Hello Ada (v2)")
    checkin_now(client, stub)
    instance_id = stub.checkins[-1]["instance_id"]
    paths = set()
    for _method, path, headers in list(stub.requests):
        sent = {k.lower(): v for k, v in headers.items()}
        assert sent.get("x-anvil-instance") == instance_id, path
        paths.add(path.split("?")[0].rsplit("/", 1)[-1] if "/bundles/" not in path else "bundles")
    assert {"releases", "stream", "bundles", "checkin"} <= paths


def test_the_forge_can_shorten_the_check_in_interval_and_lengthen_it_again(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    stub.checkin_answer = {"checkin_interval": 0.01}  # bounded: at least 1 s
    client = make_client(stub, checkin_interval=60)
    client.prompt("welcome.message", name="Ada")
    assert eventually(lambda: len(stub.checkins) >= 1)
    start = len(stub.checkins)
    time.sleep(2.6)
    periodic = len(stub.checkins) - start
    assert 2 <= periodic <= 4, periodic
    assert stub.checkins[-1]["checkin_interval"] == 1.0
    stub.checkin_answer = {"checkin_interval": 60}  # the rollout is over: back to the client's own
    seen = len(stub.checkins)
    assert eventually(lambda: len(stub.checkins) > seen, 3)
    time.sleep(0.2)
    settled = len(stub.checkins)
    time.sleep(1.5)
    assert len(stub.checkins) == settled


def test_a_forge_that_does_not_know_signals_still_gets_the_rest(stub: StubForge, make_client: MakeClient) -> None:
    stub.refuse_fields = ("signals",)
    stub.publish("core", 1)
    client = make_client(stub)
    client.prompt("welcome.message", name="Ada")
    checkin_now(client, stub)
    assert "signals" not in stub.checkins[-1]
    assert stub.checkins[-1]["process_id"] == os.getpid()


def test_module_level_report_uses_the_default_client(stub: StubForge, tmp_path: Any) -> None:
    from forge_stub import TOKEN

    stub.publish("core", 1)
    client = anvil_client.configure(
        forge_url=stub.url, token=TOKEN, cache_dir=tmp_path / "c", checkin_interval=60, heartbeat_interval=0.2
    )
    try:
        anvil_client.prompt("welcome.message", name="Ada")
        anvil_client.report("welcome.message", False, "parse_error")
        checkin_now(client, stub)
        assert signals_sent(stub)["core"]["1"]["outcomes"] == {"ok": 0, "failed": {"parse_error": 1}}
    finally:
        client.close()


def test_render_guard_is_a_boolean_read_from_the_environment() -> None:
    assert Config().render_guard is True
    assert Config.from_env({"ANVIL_RENDER_GUARD": "false"}, start="/").render_guard is False
    with pytest.raises(ConfigError, match="render_guard"):
        Config(render_guard="no")  # type: ignore[arg-type]


def test_signals_are_bounded() -> None:
    from anvil_client._signals import MAX_OUTCOME_KINDS, MAX_PROBLEMS, Signals, outcome_kind

    class Entry:
        id = "welcome.message"
        set = "core"
        version = 1

    signals = Signals()
    for index in range(MAX_OUTCOME_KINDS + 10):
        signals.outcome(Entry(), False, f"kind {index}")
    for index in range(MAX_PROBLEMS + 10):
        signals.render_failed(Entry(), MissingVariables("welcome.message", [f"v{index}"]), guarded=False,
                              fallback=False)
    report = signals.report()["core"]["1"]
    assert len(report["outcomes"]["failed"]) == MAX_OUTCOME_KINDS + 1
    assert report["outcomes"]["failed"]["other"] == 10
    assert len(report["problems"]) == MAX_PROBLEMS
    assert report["errors"] == {"missing_variables": MAX_PROBLEMS + 10}
    assert outcome_kind("  LLM Error / 500 ") == "llm_error_500" and outcome_kind("!!!") == "unspecified"


def test_counters_of_versions_no_longer_served_are_kept_for_a_few_versions_only(tmp_path: Any) -> None:
    from anvil_client._cache import write_disk_bundle
    from anvil_client._signals import MAX_RETIRED_VERSIONS
    from anvil_client.bundle import load_bundle

    client = anvil_client.Client(cache_dir=tmp_path / "c", sync=False)
    write_disk_bundle(tmp_path / "c", load_bundle(make_bundle("core", 1)))
    client.start()
    for version in range(2, MAX_RETIRED_VERSIONS + 20):
        with client._lock:
            client._apply(load_bundle(make_bundle("core", version)), "disk", write=False)
        client.prompt("welcome.message", name="Ada")
    assert len(client._signals._tracked) == MAX_RETIRED_VERSIONS + 1
    client.close()


def test_a_report_keeps_at_most_a_hundred_problem_examples_and_stays_small() -> None:
    import json

    from anvil_client._signals import MAX_PROBLEMS_REPORTED, MAX_VERSIONS_REPORTED, Signals

    class Entry:
        id = "welcome.message"
        set = "core"

        def __init__(self, version: int) -> None:
            self.version = version

    signals = Signals()
    for version in range(1, MAX_VERSIONS_REPORTED + 10):
        for index in range(30):
            signals.render_failed(Entry(version), anvil_client.TemplateError(str(index) + "x" * 300), guarded=False,
                                  fallback=False)
    report = signals.report()
    versions = [item for versions in report.values() for item in versions.values()]
    assert len(versions) == MAX_VERSIONS_REPORTED
    assert sum(len(item.get("problems", [])) for item in versions) == MAX_PROBLEMS_REPORTED
    assert len(json.dumps(report)) < 64 * 1024
