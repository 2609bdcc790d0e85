"""``anvil-forge import`` and ``export`` as separate processes, and 40 imported prompts reaching a LIVE client.

The journey: 40 prompts imported from a directory by the editor, submitted (editor) and approved (reviewer)
through the web pages of a real FORGE, published by the command, received by a real LIVE client; then an
export re-imported says ``0 added, 0 changed, 0 removed``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import anvil_client
from tests.forge_process import ForgeProcess

pytestmark = pytest.mark.integration

FAST = {"ANVIL_RELEASE_POLL_SECONDS": "0.2", "ANVIL_STREAM_HEARTBEAT_SECONDS": "1"}


def forge_command(forge: ForgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anvil_forge.cli", *args], env=forge.env, capture_output=True, text=True, timeout=120
    )


def prompt_directory(path: Path, count: int = 40) -> Path:
    path.mkdir(parents=True)
    (path / "set.yaml").write_text("name: Imported prompts\ndescription: Brought in from the app's code.\n")
    for n in range(1, count + 1):
        (path / f"imported.p{n:02}.j2").write_text(
            f"---\ndescription: Prompt number {n}.\nparameters:\n  name:\n    type: string\n    required: true\n"
            f"metadata:\n  model: gpt-4o-mini\n---\nPrompt {n} says hello to {{{{ name }}}}.\n"
        )
    return path


def summary(out: str) -> str:
    return out.splitlines()[0]


def test_import_prints_the_summary_and_ids_and_dry_run_writes_nothing(make_forge, tmp_path):
    forge = make_forge(start=False)
    source = prompt_directory(tmp_path / "prompts", count=3)

    dry = forge_command(forge, "import", "acme/support-bot/imported", str(source), "--as", "editor", "--dry-run")
    real = forge_command(forge, "import", "acme/support-bot/imported", str(source), "--as", "editor")
    again = forge_command(forge, "import", "acme/support-bot/imported", str(source), "--as", "editor")

    assert dry.returncode == 0, dry.stderr
    assert "Dry run: nothing was written." in dry.stderr
    assert real.stdout == dry.stdout
    assert real.stdout.splitlines() == [
        "3 added, 0 changed, 0 removed, 0 unchanged", "added:", "  imported.p01", "  imported.p02", "  imported.p03"
    ]
    assert summary(again.stdout) == "0 added, 0 changed, 0 removed, 3 unchanged"


def test_prune_removes_and_a_changed_file_is_changed(make_forge, tmp_path):
    forge = make_forge(start=False)
    source = prompt_directory(tmp_path / "prompts", count=3)
    forge_command(forge, "import", "acme/support-bot/imported", str(source), "--as", "editor")
    (source / "imported.p03.j2").unlink()
    (source / "imported.p02.j2").write_text("Changed {{ name }}\n")

    kept = forge_command(forge, "import", "acme/support-bot/imported", str(source), "--as", "editor", "--dry-run")
    pruned = forge_command(forge, "import", "acme/support-bot/imported", str(source), "--as", "editor", "--prune")

    assert summary(kept.stdout) == "0 added, 1 changed, 0 removed, 1 unchanged"
    assert "were kept (--prune removes them)" in kept.stderr
    assert pruned.stdout.splitlines() == [
        "0 added, 1 changed, 1 removed, 1 unchanged", "changed:", "  imported.p02", "removed:", "  imported.p03",
        "unchanged:", "  imported.p01",
    ]


def test_bad_input_is_refused_with_file_and_line_and_nothing_is_created(make_forge, tmp_path):
    forge = make_forge(start=False)
    source = prompt_directory(tmp_path / "prompts", count=2)
    (source / "imported.p02.j2").write_text("---\nparameters:\n  name: text\n---\n{{ name }}\n")

    result = forge_command(forge, "import", "acme/support-bot/imported", str(source), "--as", "editor")
    export = forge_command(forge, "export", "acme/support-bot/imported", "--out", str(tmp_path / "out"))

    assert result.returncode == 1
    assert "imported.p02.j2, line 3: parameter name: unknown type 'text'" in result.stderr
    assert result.stdout == ""
    assert export.returncode == 1 and "no prompt set imported" in export.stderr


def test_a_reviewer_cannot_import(make_forge, tmp_path):
    forge = make_forge(start=False)

    result = forge_command(forge, "import", "acme/support-bot/core", str(prompt_directory(tmp_path / "p", 1)),
                           "--as", "reviewer")

    assert result.returncode == 1
    assert "reviewer, which may not edit prompts" in result.stderr


def test_export_of_a_version_writes_the_layout_and_refuses_a_non_empty_directory(make_forge, tmp_path):
    forge = make_forge(start=False)
    out = tmp_path / "v1"

    first = forge_command(forge, "export", "acme/support-bot/core", "--version", "1", "--out", str(out))
    second = forge_command(forge, "export", "acme/support-bot/core", "--out", str(out))

    assert first.returncode == 0, first.stderr
    assert "set.yaml" in {p.name for p in out.iterdir()}
    assert (out / "greeting.welcome.j2").read_text().startswith("---\n")
    assert second.returncode == 1 and "not an empty directory" in second.stderr


def eventually(predicate: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def signed_in(forge: ForgeProcess, username: str) -> httpx.Client:
    web = httpx.Client(base_url=forge.url, follow_redirects=False, timeout=10)
    web.get("/login/")
    response = web.post("/login/", data={"username": username, "password": "anvil-demo",
                                         "csrfmiddlewaretoken": web.cookies["csrftoken"]})
    assert response.status_code == 302, response.text
    return web


def post(web: httpx.Client, path: str, **data: str) -> httpx.Response:
    response = web.post(path, data={**data, "csrfmiddlewaretoken": web.cookies["csrftoken"]})
    assert response.status_code == 302, response.text[:2000]
    return response


def test_forty_prompts_imported_reviewed_published_reach_a_live_client_and_an_export_reimports_unchanged(
    make_forge, tmp_path
):
    forge = make_forge(env=FAST)
    source = prompt_directory(tmp_path / "prompts", count=40)

    imported = forge.cli("import", "acme/support-bot/imported", str(source), "--as", "editor")
    assert summary(imported) == "40 added, 0 changed, 0 removed, 0 unchanged"

    set_path = "/o/acme/p/support-bot/s/imported/"
    editor = signed_in(forge, "editor")
    page = editor.get(set_path).text
    revision = re.search(r'name="base_revision" value="(\d+)"', page).group(1)
    post(editor, set_path + "submit/", base_revision=revision)
    reviewer = signed_in(forge, "reviewer")
    post(reviewer, set_path + "review/", version="1", decision="approve", comment="Imported as they were.")
    published = forge.cli("publish", "acme/support-bot/imported", "--version", "1", "--environment", "production",
                          "--as", "editor")
    assert "version 1 to production" in published

    token = re.search(r"anvil_live_[A-Za-z0-9_-]+", forge.cli(
        "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "import"
    )).group(0)
    client = anvil_client.Client(forge_url=forge.url, token=token, cache_dir=tmp_path / "cache", poll_interval=1,
                                 heartbeat_interval=1, backoff_initial=0.1, backoff_max=0.5)
    try:
        assert eventually(lambda: client.status()["versions"].get("imported") == 1), client.status()
        for n in (1, 17, 40):
            assert client.prompt(f"imported.p{n:02}", name="Ada") == f"Prompt {n} says hello to Ada."
    finally:
        client.close()

    out = tmp_path / "export"
    forge.cli("export", "acme/support-bot/imported", "--out", str(out))
    assert len(list(out.glob("*.j2"))) == 40
    again = forge.cli("import", "acme/support-bot/imported", str(out), "--as", "editor", "--prune")
    assert again.startswith("0 added, 0 changed, 0 removed, 40 unchanged\n")
    version_out = tmp_path / "export-v1"
    forge.cli("export", "acme/support-bot/imported", "--version", "1", "--out", str(version_out))
    assert sorted(p.read_bytes() for p in out.iterdir()) == sorted(p.read_bytes() for p in version_out.iterdir())
