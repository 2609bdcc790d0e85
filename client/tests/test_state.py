from __future__ import annotations

import json
from pathlib import Path

import pytest

from anvil_client import ConfigError, HostState, read_host_state, write_host_state


def test_no_state_file_means_no_decision(tmp_path: Path) -> None:
    assert read_host_state(tmp_path) == HostState(mode=None, pins={})


def test_mode_and_pins_round_trip_and_merge(tmp_path: Path) -> None:
    write_host_state(tmp_path, mode="FROZEN")
    write_host_state(tmp_path, pin=("core", 3))
    write_host_state(tmp_path, pin=("other", 1))
    state = write_host_state(tmp_path, unpin="other")
    assert state == HostState(mode="frozen", pins={"core": 3})
    assert read_host_state(tmp_path) == state
    data = json.loads((tmp_path / "state.json").read_text())
    assert data == {"format": "anvil.state/1", "mode": "frozen", "pins": {"core": 3}}


def test_no_temp_files_are_left_behind(tmp_path: Path) -> None:
    write_host_state(tmp_path, mode="accepting")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.lock"]


@pytest.mark.parametrize(
    "kwargs", [{"mode": "sleepy"}, {"pin": ("core", 0)}, {"pin": ("Bad Set", 1)}, {"pin": ("core", True)}]
)
def test_bad_values_are_refused_and_nothing_is_written(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        write_host_state(tmp_path, **kwargs)
    assert not (tmp_path / "state.json").exists()


def test_a_garbled_state_file_reads_as_no_decision(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    assert read_host_state(tmp_path) == HostState()


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="cannot write the host state"):
        write_host_state(target / "sub", mode="frozen")


def test_a_sync_request_bumps_the_count_and_keeps_mode_and_pins(tmp_path: Path) -> None:
    write_host_state(tmp_path, mode="frozen", pin=("core", 3))
    assert write_host_state(tmp_path, request_sync=True).sync_request == 1
    state = write_host_state(tmp_path, request_sync=True)
    assert state == HostState(mode="frozen", pins={"core": 3}, sync_request=2)
    assert write_host_state(tmp_path, unpin="core").sync_request == 2  # other writes keep the count
    assert json.loads((tmp_path / "state.json").read_text())["sync_request"] == 2
    assert read_host_state(tmp_path).sync_request == 2


@pytest.mark.parametrize("garbage", ["-1", "true", '"3"', "1.5"])
def test_a_garbled_sync_request_reads_as_none(tmp_path: Path, garbage: str) -> None:
    (tmp_path / "state.json").write_text(f'{{"format": "anvil.state/1", "mode": "frozen", "sync_request": {garbage}}}')
    assert read_host_state(tmp_path) == HostState(mode="frozen", pins={}, sync_request=0)
