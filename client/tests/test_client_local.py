"""The client without a FORGE: bootstrap file, disk cache, errors, and the hot path's promises."""

from __future__ import annotations

import builtins
import io
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from forge_stub import make_bundle

import anvil_client
from anvil_client import (
    AmbiguousPrompt,
    InvalidVariable,
    MissingVariables,
    NotReady,
    PromptNotFound,
    TemplateError,
    write_bootstrap,
)
from anvil_client._cache import write_disk_bundle
from anvil_client.bundle import load_bundle

MakeClient = Callable[..., anvil_client.Client]

PROMPTS = [
    {
        "id": "welcome.message",
        "template": "Hello {{ name }}, welcome to {{ plan }}!\n",
        "parameters": [
            {"name": "name", "type": "string", "required": True},
            {"name": "plan", "type": "string", "default": "Free"},
        ],
        "metadata": {"model": "gpt-4o"},
    },
    {
        "id": "orders.summary",
        "template": "{% for item in items %}- {{ item }}\n{% endfor %}{% if vip %}VIP{% endif %}",
        "parameters": [
            {"name": "items", "type": "list", "required": True},
            {"name": "vip", "type": "boolean", "default": False},
            {"name": "count", "type": "number", "default": 0},
        ],
    },
    {"id": "errors.not_found", "template": "Not found: {{ what }}", "parameters": []},
]


def cache_with(tmp_path: Path, *bundles: dict[str, Any]) -> Path:
    cache = tmp_path / "cache"
    for bundle in bundles:
        assert write_disk_bundle(cache, load_bundle(bundle))
    return cache


def test_serves_from_the_disk_cache_without_a_forge(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 4, PROMPTS)))
    assert client.prompt("welcome.message", {"name": "Ada"}) == "Hello Ada, welcome to Free!\n"
    assert client.prompt("welcome.message", name="Ada", plan="Pro") == "Hello Ada, welcome to Pro!\n"
    assert client.prompt("welcome.message", {"name": "Ada"}, plan="Pro") == "Hello Ada, welcome to Pro!\n"
    assert client.prompt("orders.summary", items=["a", "b"], vip=True) == "- a\n- b\nVIP"
    status = client.status()
    assert status["source"] == "disk"
    assert status["versions"] == {"core": 4}
    assert status["mode"] == "accepting"
    assert status["connected"] is False


def test_serves_from_a_bootstrap_file(tmp_path: Path, make_client: MakeClient) -> None:
    path = write_bootstrap(tmp_path / "prompts.json", [make_bundle("core", 2, PROMPTS)])
    assert json.loads(path.read_text())["format"] == "anvil.bootstrap/1"
    client = make_client(bootstrap=path)
    assert client.prompt("errors.not_found", what="page") == "Not found: page"
    assert client.status()["source"] == "bootstrap"


def test_the_newer_of_bootstrap_and_disk_wins(tmp_path: Path, make_client: MakeClient) -> None:
    path = write_bootstrap(tmp_path / "prompts.json", [make_bundle("core", 2)])
    client = make_client(bootstrap=path, cache_dir=cache_with(tmp_path, make_bundle("core", 3)))
    assert client.prompt("welcome.message", name="A") == "Hello A (v3)"


def test_no_bundle_anywhere_raises_not_ready_saying_what_to_do(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(NotReady) as info:
        client.prompt("welcome.message", name="Ada")
    assert "anvil connect" in str(info.value)
    assert "bootstrap" in str(info.value)


def test_not_ready_with_an_unreachable_forge_names_the_forge(make_client: MakeClient) -> None:
    from tests.forge_process import free_port

    client = make_client(forge_url=f"http://127.0.0.1:{free_port()}", token="anvil_live_x", startup_timeout=1)
    with pytest.raises(NotReady, match="has not answered"):
        client.prompt("welcome.message")


def test_fallback_text_is_returned_instead_of_an_error(make_client: MakeClient) -> None:
    client = make_client()
    assert client.prompt("welcome.message", fallback="Hi!") == "Hi!"


def test_unknown_id_suggests_close_matches(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1, PROMPTS)))
    with pytest.raises(PromptNotFound) as info:
        client.prompt("welcome.mesage")
    assert info.value.close_matches == ("welcome.message",)
    assert "Did you mean: welcome.message" in str(info.value)


def test_missing_variables_are_named(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1, PROMPTS)))
    with pytest.raises(MissingVariables) as info:
        client.prompt("welcome.message", plan="Pro")
    assert info.value.names == ("name",)
    with pytest.raises(MissingVariables, match="what"):  # used by the template, not declared
        client.prompt("errors.not_found")
    with pytest.raises(MissingVariables, match="items"):
        client.prompt("orders.summary")


@pytest.mark.parametrize(
    ("prompt_id", "values", "name"),
    [
        ("welcome.message", {"name": 3}, "name"),
        ("welcome.message", {"name": None}, "name"),
        ("orders.summary", {"items": "abc"}, "items"),
        ("orders.summary", {"items": [], "vip": 1}, "vip"),
        ("orders.summary", {"items": [], "count": True}, "count"),
        ("orders.summary", {"items": [], "count": "3"}, "count"),
    ],
)
def test_wrong_types_raise_invalid_variable(
    tmp_path: Path, make_client: MakeClient, prompt_id: str, values: dict, name: str
) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1, PROMPTS)))
    with pytest.raises(InvalidVariable) as info:
        client.prompt(prompt_id, values)
    assert info.value.name == name


def test_optional_parameter_accepts_none_and_numbers_accept_int_and_float(
    tmp_path: Path, make_client: MakeClient
) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1, PROMPTS)))
    assert client.prompt("welcome.message", name="A", plan=None) == "Hello A, welcome to None!\n"
    assert client.prompt("orders.summary", items=(), count=2.5) == ""


def test_sandbox_refusal_is_a_template_error(tmp_path: Path, make_client: MakeClient) -> None:
    bundle = make_bundle("core", 1, [{"id": "evil", "template": "{{ x.__class__.__mro__ }}", "parameters": []}])
    client = make_client(cache_dir=cache_with(tmp_path, bundle))
    with pytest.raises(TemplateError):
        client.prompt("evil", x="s")


def test_get_template_ids_describe_prompts(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 5, PROMPTS)))
    assert client.ids() == ["errors.not_found", "orders.summary", "welcome.message"]
    assert client.template("errors.not_found") == "Not found: {{ what }}"
    info = client.get("welcome.message")
    assert info["set"] == "core" and info["version"] == 5
    assert info["metadata"] == {"model": "gpt-4o"}
    assert [p["name"] for p in info["parameters"]] == ["name", "plan"]
    assert client.get("core:welcome.message") == info


def test_ids_in_two_sets_need_the_set_prefix(tmp_path: Path, make_client: MakeClient, caplog: Any) -> None:
    cache = cache_with(tmp_path, make_bundle("core", 1), make_bundle("extra", 7))
    with caplog.at_level(logging.ERROR, logger="anvil_client"):
        client = make_client(cache_dir=cache)
        assert client.ids() == ["core:welcome.message", "extra:welcome.message"]
    assert "welcome.message (core, extra)" in caplog.text
    assert "welcome.message" in client.status()["last_error"]
    with pytest.raises(AmbiguousPrompt, match=r"core:welcome\.message"):
        client.prompt("welcome.message", name="A")
    assert client.prompt("extra:welcome.message", name="A") == "Hello A (v7)"


def test_corrupt_cache_file_is_set_aside_and_never_used(tmp_path: Path, make_client: MakeClient, caplog: Any) -> None:
    cache = cache_with(tmp_path, make_bundle("core", 1), make_bundle("other", 1, PROMPTS))
    target = cache / "bundles" / "core.json"
    target.write_bytes(target.read_bytes().replace(b"Hello", b"Hallo"))
    with caplog.at_level(logging.ERROR, logger="anvil_client"):
        client = make_client(cache_dir=cache)
        assert client.ids() == ["errors.not_found", "orders.summary", "welcome.message"]
    assert client.status()["versions"] == {"other": 1}
    assert not target.exists()
    aside = list((cache / "bundles").glob("core.json.corrupt-*"))
    assert len(aside) == 1
    assert "corrupt" in caplog.text and "digest" in caplog.text


def test_truncated_cache_file_is_set_aside(tmp_path: Path, make_client: MakeClient) -> None:
    cache = cache_with(tmp_path, make_bundle("core", 1))
    target = cache / "bundles" / "core.json"
    target.write_bytes(target.read_bytes()[:50])
    client = make_client(cache_dir=cache)
    with pytest.raises(NotReady):
        client.prompt("welcome.message", name="A")
    assert list((cache / "bundles").glob("core.json.corrupt-*"))


class _Forbidden(AssertionError):
    pass


def test_hot_path_opens_no_socket_no_file_and_reads_no_clock(
    tmp_path: Path, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1, PROMPTS)))
    # First uses may do I/O: starting the client, compiling a prompt (importing Jinja2), logging a fallback.
    client.prompt("welcome.message", name="warm")
    client.prompt("orders.summary", items=[])
    client.prompt("nope", fallback="x")

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise _Forbidden(f"I/O on the hot path: {args!r:.80}")

    lock_type = type(threading.Lock())
    acquired: list[str] = []
    results: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for target, name in [
            (socket, "socket"),
            (socket, "create_connection"),
            (builtins, "open"),
            (io, "open"),
            (os, "open"),
            (os, "stat"),
            (time, "time"),
            (time, "monotonic"),
            (time, "perf_counter"),
        ]:
            patch.setattr(target, name, forbidden)
        patch.setattr(threading, "Lock", lambda: acquired.append("Lock") or lock_type())
        try:
            for _ in range(3):
                results.append(client.prompt("welcome.message", name="Ada"))
                results.append(client.prompt("orders.summary", {"items": [1]}, vip=True))
                results.append(client.prompt("nope", fallback="x"))
        except Exception as exc:  # report after the patches are gone
            results.append(repr(exc))
    assert results == ["Hello Ada, welcome to Free!\n", "- 1\nVIP", "x"] * 3
    assert acquired == []


def test_readers_see_a_whole_version_or_none(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1)))
    client.start()
    versions = [
        load_bundle(
            make_bundle("core", n, [{"id": f"p{i}.v{n}", "template": f"{n}", "parameters": []} for i in range(20)])
        )
        for n in range(2, 40)
    ]
    seen_mixed: list[set[str]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            names = {key.rsplit(".", 1)[1] for key in client._prompts if ":" not in key and key.startswith("p")}
            if len(names) > 1:
                seen_mixed.append(names)

    thread = threading.Thread(target=reader)
    thread.start()
    for bundle in versions:
        with client._lock:
            client._apply(bundle, "forge", write=False)
    stop.set()
    thread.join()
    assert seen_mixed == []
    assert client.status()["versions"] == {"core": 39}


def test_unwritable_cache_keeps_serving_the_new_bundle_from_memory(
    tmp_path: Path, make_client: MakeClient, caplog: Any
) -> None:
    cache = cache_with(tmp_path, make_bundle("core", 1))
    client = make_client(cache_dir=cache)
    client.start()
    (cache / "bundles").chmod(0o500)
    try:
        with caplog.at_level(logging.ERROR, logger="anvil_client"), client._lock:
            change = client._apply(load_bundle(make_bundle("core", 2)), "forge")
    finally:
        (cache / "bundles").chmod(0o700)
    assert change is not None and change["version"] == 2
    assert client.prompt("welcome.message", name="A") == "Hello A (v2)"
    if os.geteuid() != 0:  # root writes anyway
        assert "serving it from memory" in caplog.text


def test_close_is_idempotent_and_prompts_stay_readable(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1)))
    client.start()
    client.close()
    client.close()
    assert client.prompt("welcome.message", name="A") == "Hello A (v1)"


def test_on_update_callbacks_are_called_and_their_errors_logged(
    tmp_path: Path, make_client: MakeClient, caplog: Any
) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1)))
    client.start()
    changes: list[dict] = []

    @client.on_update
    def broken(change: dict) -> None:
        raise RuntimeError("host bug")

    client.on_update(changes.append)
    with caplog.at_level(logging.ERROR, logger="anvil_client"), client._lock:
        client._apply(load_bundle(make_bundle("core", 2)), "forge", write=False)
    assert changes == [{"set": "core", "version": 2, "previous": 1, "source": "forge"}]
    assert "callback failed" in caplog.text


def test_host_state_is_honoured_at_start(tmp_path: Path, make_client: MakeClient) -> None:
    from anvil_client import write_host_state

    cache = cache_with(tmp_path, make_bundle("core", 1))
    write_host_state(cache, mode="frozen", pin=("core", 1))
    client = make_client(cache_dir=cache)
    status = client.status()
    assert (status["mode"], status["pins"]) == ("frozen", {"core": 1})


def test_prompts_compile_on_first_use_only(tmp_path: Path, make_client: MakeClient) -> None:
    many = [{"id": f"p{i:04d}", "template": f"{{{{ name }}}} #{i}", "parameters": []} for i in range(1000)]
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1, many)))
    client.start()
    entries = [client._prompts[f"p{i:04d}"] for i in range(1000)]
    assert all(entry._compiled is None for entry in entries)
    assert client.prompt("p0007", name="x") == "x #7"
    assert entries[7]._compiled is not None
    assert sum(entry._compiled is not None for entry in entries) == 1
    first = entries[7].render
    assert client.prompt("p0007", name="y") == "y #7"
    assert client._prompts["p0007"].render is first  # compiled once


def test_an_unchanged_prompt_shares_its_compiled_template_with_the_next_version(
    tmp_path: Path, make_client: MakeClient
) -> None:
    two = [
        {"id": "a", "template": "A {{ x }}", "parameters": []},
        {"id": "b", "template": "B {{ x }}", "parameters": []},
    ]
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1, two)))
    assert client.prompt("a", x=1) == "A 1"
    compiled_a = client._prompts["a"].render
    changed = [two[0], {"id": "b", "template": "B2 {{ x }}", "parameters": []}]
    with client._lock:
        client._apply(load_bundle(make_bundle("core", 2, changed)), "forge", write=False)
    assert client._prompts["a"].render is compiled_a
    assert client.get("a")["version"] == 2
    assert client.prompt("b", x=1) == "B2 1"


def test_many_threads_render_while_versions_are_swapped(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 1)))
    assert client.prompt("welcome.message", name="T") == "Hello T (v1)"
    bundles = [load_bundle(make_bundle("core", n)) for n in range(2, 30)]
    valid = {f"Hello T (v{n})" for n in range(1, 30)}
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                seen.add(client.prompt("welcome.message", {"name": "T"}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for bundle in bundles:
        with client._lock:
            client._apply(bundle, "forge", write=False)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen <= valid
    assert client.prompt("welcome.message", name="T") == "Hello T (v29)"


def test_an_unexpected_failure_while_loading_never_raises_into_the_host(
    tmp_path: Path, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anvil_client._cache

    def broken(cache_dir: Path) -> list:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(anvil_client._cache, "read_disk_bundles", broken)
    client = make_client()
    assert client.prompt("welcome.message", fallback="offline") == "offline"
    assert "disk on fire" in client.status()["last_error"]


def test_the_variable_names_passed_are_recorded_per_id_as_called(tmp_path: Path, make_client: MakeClient) -> None:
    client = make_client(cache_dir=cache_with(tmp_path, make_bundle("core", 4, PROMPTS)))
    client.prompt("welcome.message", name="Ada")
    client.prompt("welcome.message", {"name": "Ada"}, plan="Pro")
    client.prompt("welcome.message", {"plan": "Pro", "name": "Ada"})  # nothing new: the hot path adds nothing
    client.prompt("core:welcome.message", {"name": "Ada", "extra": 1, "not-a-name": 2, 3: 4})
    client.prompt("orders.summary", items=[])
    with pytest.raises(anvil_client.AnvilError):
        client.prompt("no.such.prompt", name="Ada")
    assert client._usage_report() == {
        "core:welcome.message": ["extra", "name"],
        "orders.summary": ["items"],
        "welcome.message": ["name", "plan"],
    }
    threads = [
        threading.Thread(target=lambda n=n: [client.prompt("welcome.message", name="A", **{f"v{n}_{i}": i})
                                             for i in range(50)])
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(client._usage_report()["welcome.message"]) == 50  # at most 50 names reported per id
    assert len(client._usage["welcome.message"]) == 2 + 4 * 50  # none lost to a race
