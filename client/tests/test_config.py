from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from anvil_client import Config, ConfigError


def test_config_is_frozen_and_keyword_only() -> None:
    config = Config(cache_dir="/tmp/x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mode = "frozen"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Config("http://x")  # type: ignore[misc]


def test_out_of_range_values_are_clamped_at_construction() -> None:
    config = Config(startup_timeout=500, heartbeat_interval=10, read_timeout=1, backoff_max=0.01)
    assert config.startup_timeout == 60
    assert config.read_timeout == 20  # never below two heartbeats
    assert config.backoff_max >= config.backoff_initial


def test_default_read_timeout_is_three_heartbeats() -> None:
    assert Config(heartbeat_interval=15).read_timeout == 45


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"mode": "sleepy"}, "mode"),
        ({"forge_url": "ftp://x", "token": "t"}, "forge_url"),
        ({"forge_url": "http://127.0.0.1:1"}, "ANVIL_TOKEN"),
        ({"token": "abc"}, "forge_url"),
        ({"startup_timeout": "soon"}, "startup_timeout"),
        ({"token": "two words", "forge_url": "http://x.y"}, "token"),
        ({"render_max_steps": 0}, "render_max_steps"),
        ({"render_max_chars": "many"}, "render_max_chars"),
        ({"render_max_steps": 1.5}, "render_max_steps"),
        ({"render_max_seconds": 0}, "render_max_seconds"),
        ({"render_max_seconds": True}, "render_max_seconds"),
    ],
)
def test_bad_values_are_refused_naming_the_option(options: dict, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Config(**options)


def test_mode_is_normalised() -> None:
    assert Config(mode=" FROZEN ").mode == "frozen"


def test_from_env_reads_the_environment(tmp_path: Path) -> None:
    config = Config.from_env(
        {
            "ANVIL_FORGE_URL": "http://127.0.0.1:9/",
            "ANVIL_TOKEN": "anvil_live_x",
            "ANVIL_CACHE_DIR": str(tmp_path / "c"),
            "ANVIL_MODE": "frozen",
            "ANVIL_BOOTSTRAP": str(tmp_path / "b.json"),
        },
        start=tmp_path,
    )
    assert config.forge_url == "http://127.0.0.1:9"
    assert config.token == "anvil_live_x"
    assert config.cache_dir == tmp_path / "c"
    assert config.mode == "frozen"
    assert config.bootstrap == tmp_path / "b.json"


def test_from_env_reads_anvil_toml_and_the_credentials_file_beside_it(tmp_path: Path) -> None:
    (tmp_path / "anvil.toml").write_text('[anvil]\nforge_url = "http://127.0.0.1:9"\nbootstrap = "prompts.json"\n')
    (tmp_path / "anvil.credentials").write_text('token = "anvil_live_secret"\n')
    sub = tmp_path / "app" / "pkg"
    sub.mkdir(parents=True)
    config = Config.from_env({}, start=sub)
    assert config.forge_url == "http://127.0.0.1:9"
    assert config.token == "anvil_live_secret"
    assert config.bootstrap == (tmp_path / "prompts.json").resolve()
    assert config.cache_dir == tmp_path / ".anvil"


def test_environment_wins_over_anvil_toml(tmp_path: Path) -> None:
    (tmp_path / "anvil.toml").write_text('[anvil]\nforge_url = "http://127.0.0.1:9"\nmode = "frozen"\n')
    config = Config.from_env({"ANVIL_TOKEN": "t", "ANVIL_MODE": "accepting"}, start=tmp_path)
    assert config.mode == "accepting"
    assert config.token == "t"


def test_a_token_in_anvil_toml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "anvil.toml").write_text('[anvil]\nforge_url = "http://127.0.0.1:9"\ntoken = "leak"\n')
    with pytest.raises(ConfigError, match=r"anvil\.credentials"):
        Config.from_env({}, start=tmp_path)


def test_unknown_option_in_anvil_toml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "anvil.toml").write_text("[anvil]\nforge = 1\n")
    with pytest.raises(ConfigError, match="'forge'"):
        Config.from_env({}, start=tmp_path)


def test_bare_token_credentials_file(tmp_path: Path) -> None:
    (tmp_path / "anvil.toml").write_text('[anvil]\nforge_url = "http://127.0.0.1:9"\n')
    (tmp_path / "anvil.credentials").write_text("anvil_live_bare\n")
    assert Config.from_env({}, start=tmp_path).token == "anvil_live_bare"


def test_render_limits_come_from_anvil_toml(tmp_path: Path) -> None:
    (tmp_path / "anvil.toml").write_text("[anvil]\nrender_max_steps = 500000\nrender_max_seconds = 5\n")
    config = Config.from_env({}, start=tmp_path)
    assert (config.render_max_steps, config.render_max_chars, config.render_max_seconds) == (500_000, 20_000_000, 5.0)
