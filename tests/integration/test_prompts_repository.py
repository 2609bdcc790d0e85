"""Prompts kept in a repository, for real, as a CI job runs it: `anvil prompts pull`, an edit, `diff`, `push
--submit` with an editor's API key against a running FORGE; another user (the reviewer, with their own key)
approves through the management API, and the editor's key publishes it; `pull --environment production` then
gives the edited files back. The editor's key can approve nothing, and a template that does not render fails
`check` and `push`, changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SET = "acme/support-bot/core"
MANAGE = "/api/v1/manage/organisations/acme/projects/support-bot/sets/core/"


def anvil(cwd: Path, key: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    env["ANVIL_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "anvil_client._cli", "prompts", *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def api(forge: Any, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = forge.url + (path if path.startswith("/") else MANAGE + path)
    request = urllib.request.Request(url, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_pull_edit_push_submit_approve_by_another_user_publish_and_pull_again(forge, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "anvil.toml").write_text(f'[anvil]\nforge_url = "{forge.url}"\n')  # the FORGE comes from anvil.toml
    editor = forge.cli("apikey", "create", "editor", "--name", "ci", "--org", "acme").strip()
    reviewer = forge.cli("apikey", "create", "reviewer", "--name", "review bot").strip()
    assert editor.startswith("anvil_key_") and "\n" not in editor

    pulled = anvil(repo, editor, "pull", SET, "--dir", "prompts")
    assert pulled.returncode == 0, pulled.stderr
    files = sorted(p.name for p in (repo / "prompts").iterdir())
    assert "set.yaml" in files and "greeting.welcome.j2" in files
    assert anvil(repo, editor, "diff", SET, "--dir", "prompts").returncode == 0  # nothing to change

    welcome = repo / "prompts" / "greeting.welcome.j2"
    welcome.write_text(welcome.read_text().rstrip("\n") + " We are glad you are here.\n")
    diff = anvil(repo, editor, "diff", SET, "--dir", "prompts")
    assert diff.returncode == 2 and "+" in diff.stdout and "We are glad you are here." in diff.stdout
    dry = anvil(repo, editor, "push", SET, "--dir", "prompts", "--dry-run")
    assert dry.returncode == 0 and "~ greeting.welcome" in dry.stdout
    assert anvil(repo, editor, "diff", SET, "--dir", "prompts").returncode == 2  # the dry run changed nothing

    pushed = anvil(repo, editor, "push", SET, "--dir", "prompts", "--submit")
    assert pushed.returncode == 0, pushed.stderr
    assert "Submitted for review as version 3" in pushed.stdout
    again = anvil(repo, editor, "push", SET, "--dir", "prompts", "--submit")
    assert again.returncode == 0 and "nothing changed" in again.stdout and "Submitted" not in again.stdout

    status, refused = api(forge, editor, "POST", "versions/3/approve", {})
    assert status == 403 and "editor" in refused["error"]  # push never approves; the editor's key cannot
    status, approved = api(forge, reviewer, "POST", "versions/3/approve", {"comment": "from CI, fine"})
    assert status == 200 and approved["state"] == "approved" and approved["created_by"] == "editor"
    status, release = api(forge, editor, "POST", "versions/3/publish", {"environment": "production"})
    assert status == 201 and release["version"] == 3 and release["published_by"] == "editor"

    live = anvil(repo, editor, "pull", SET, "--dir", "live", "--environment", "production")
    assert live.returncode == 0, live.stderr
    assert (repo / "live" / "greeting.welcome.j2").read_text() == welcome.read_text()
    status, audit = api(forge, reviewer, "GET", "/api/v1/manage/organisations/acme/audit?action=version.approve")
    assert status == 200 and audit["items"][0]["actor"] == "reviewer"


def test_a_template_that_does_not_render_fails_check_and_push_and_changes_nothing(forge, tmp_path):
    key = forge.cli("apikey", "create", "editor", "--name", "ci").strip()
    assert anvil(tmp_path, key, "pull", SET, "--dir", "prompts", "--forge", forge.url).returncode == 0
    assert anvil(tmp_path, key, "check", SET, "--dir", "prompts", "--forge", forge.url).returncode == 0
    (tmp_path / "prompts" / "broken.prompt.j2").write_text("Hello {% if name %}\n")

    check = anvil(tmp_path, key, "check", SET, "--dir", "prompts", "--forge", forge.url)
    push = anvil(tmp_path, key, "push", SET, "--dir", "prompts", "--forge", forge.url)

    assert check.returncode == 1 and "broken.prompt.j2" in check.stderr
    assert push.returncode == 1 and "broken.prompt.j2" in push.stderr
    _status, detail = api(forge, key, "GET", MANAGE.rstrip("/"))
    assert "broken.prompt" not in detail["prompts"] and detail["status"] == "LOCKED"


def test_a_read_only_key_pulls_but_cannot_push_and_no_key_is_refused(forge, tmp_path):
    key = forge.cli("apikey", "create", "owner", "--name", "reader", "--read-only").strip()
    assert anvil(tmp_path, key, "pull", SET, "--dir", "prompts", "--forge", forge.url).returncode == 0
    (tmp_path / "prompts" / "new.one.j2").write_text("Hi\n")

    push = anvil(tmp_path, key, "push", SET, "--dir", "prompts", "--forge", forge.url)
    without = anvil(tmp_path, "", "pull", SET, "--dir", "prompts", "--forge", forge.url)

    assert push.returncode == 1 and "read-only" in push.stderr
    assert without.returncode == 1 and "ANVIL_API_KEY" in without.stderr
