"""``anvil prompts``' file handling and refusals that need no FORGE (the round trip with a real FORGE is in
tests/integration/test_prompts_repository.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anvil_client._cli import main
from anvil_client._prompts_cli import read_files, write_files


def test_write_files_makes_the_prompt_files_exactly_these_and_leaves_other_files(tmp_path: Path) -> None:
    (tmp_path / "old.prompt.j2").write_text("gone\n")
    (tmp_path / "README.md.bak").write_text("mine\n")
    (tmp_path / "same.j2").write_text("same\n")

    written, removed = write_files(tmp_path, {"set.yaml": "name: Core\n", "same.j2": "same\n", "new.one.j2": "hi\n"})

    assert (written, removed) == (["new.one.j2", "set.yaml"], ["old.prompt.j2"])
    assert read_files(tmp_path) == {"new.one.j2": "hi\n", "same.j2": "same\n", "set.yaml": "name: Core\n"}
    assert (tmp_path / "README.md.bak").exists()


def test_without_a_key_or_a_forge_address_the_command_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANVIL_API_KEY", raising=False)
    monkeypatch.delenv("ANVIL_FORGE_URL", raising=False)
    monkeypatch.delenv("ANVIL_CONFIG", raising=False)
    assert main(["prompts", "pull", "a/b/c", "--dir", str(tmp_path), "--path", str(tmp_path)]) == 1
    assert "ANVIL_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("ANVIL_API_KEY", "anvil_key_x")
    assert main(["prompts", "pull", "a/b/c", "--dir", str(tmp_path), "--path", str(tmp_path)]) == 1
    assert "forge_url" in capsys.readouterr().err
    assert main(["prompts", "pull", "a/b", "--dir", str(tmp_path), "--forge", "http://127.0.0.1:9"]) == 1
    assert "ORG/PROJECT/SET" in capsys.readouterr().err
