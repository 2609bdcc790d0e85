"""Prompts kept in a repository, for real, as a CI job runs it: `anvil prompts pull`, an edit, `diff`, `push
--submit` with an editor's API key against a running FORGE; a reviewer approves it as reviewers do, signed in to the
FORGE's web pages (the review page's form, with its CSRF token, over HTTP), and the editor's key publishes it through
the management API; a LIVE client running in its own process serves the edited prompt moments later, and `pull
--environment production` gives the edited files back; the audit trail has the key's reads (once per path and
hour) and names the key on its changes. The editor's key can approve nothing (approving through the
API is covered by forge/tests/api/test_manage_api.py), and a template that does not render fails `check` and `push`,
changing nothing."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
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


LIVE_CLIENT = """
import sys, time, anvil_client
client = anvil_client.Client(forge_url=sys.argv[1], token=sys.argv[2], cache_dir=sys.argv[3], instance_name="web-1",
                             checkin_interval=1, heartbeat_interval=1, backoff_initial=0.1, backoff_max=0.5)
seen = None
while True:
    version = client.status()["versions"].get("core")
    if version != seen:
        seen = version
        print(version, client.prompt("greeting.welcome", customer_name="Ada"), flush=True)
    time.sleep(0.05)
"""


def signed_in(forge: Any, username: str) -> httpx.Client:
    """A browser-like session: the login form's CSRF cookie and field, then the session cookie."""
    web = httpx.Client(base_url=forge.url, follow_redirects=False, timeout=30)
    login = web.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    answer = web.post("/login/", data={"username": username, "password": "anvil-demo", "csrfmiddlewaretoken": token})
    assert answer.status_code == 302, answer.text[:2000]
    return web


def review_form(page: str) -> tuple[str, dict[str, str]]:
    """The review page's decision form: its action and hidden fields (the CSRF token, the version in review)."""
    form = re.search(r'<form method="post" action="([^"]+)" class="review-form">(.*?)</form>', page, re.S)
    assert form, "the review page has no decision form"
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(2)))
    return html.unescape(form.group(1)), {name: html.unescape(value) for name, value in hidden.items()}


def test_pull_edit_push_submit_approve_in_the_web_publish_and_a_live_client_serves_it(forge, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "anvil.toml").write_text(f'[anvil]\nforge_url = "{forge.url}"\n')  # the FORGE comes from anvil.toml
    editor = forge.cli("apikey", "create", "editor", "--name", "ci", "--org", "acme").strip()
    assert editor.startswith("anvil_key_") and "\n" not in editor
    live_token = forge.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "live",
                           "--name", "web").splitlines()[0].strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    client = subprocess.Popen([sys.executable, "-c", LIVE_CLIENT, forge.url, live_token, str(tmp_path / "cache")],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        first = client.stdout.readline()
        assert first.startswith("1 Hi Ada!"), first  # the demo's production version

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

        # The reviewer approves in the web, as a person does: the review page shows the change and the form.
        reviewer = signed_in(forge, "reviewer")
        page = reviewer.get("/o/acme/p/support-bot/s/core/review/")
        assert page.status_code == 200 and "We are glad you are here." in page.text
        action, hidden = review_form(page.text)
        assert hidden["version"] == "3" and hidden["csrfmiddlewaretoken"]
        forged = reviewer.post(action, data={**hidden, "csrfmiddlewaretoken": "x" * 64, "decision": "approve"})
        assert forged.status_code == 403  # without the page's CSRF token the decision is refused
        decided = reviewer.post(action, data={**hidden, "decision": "approve", "comment": "Warmer, fine."})
        assert decided.status_code == 302 and decided.headers["location"] == "/o/acme/p/support-bot/s/core/"
        status, version = api(forge, editor, "GET", "versions/3")
        assert status == 200 and version["state"] == "approved" and version["created_by"] == "editor"
        assert version["reviewed_by"] == "reviewer"

        status, release = api(forge, editor, "POST", "versions/3/publish", {"environment": "production"})
        assert status == 201 and release["version"] == 3 and release["published_by"] == "editor"
        served = client.stdout.readline()  # the LIVE client: the next version it runs, and what it renders
        assert served.startswith("3 ") and served.rstrip("\n").endswith("We are glad you are here."), served
    finally:
        client.terminate()
        client.wait(10)

    live = anvil(repo, editor, "pull", SET, "--dir", "live", "--environment", "production")
    assert live.returncode == 0, live.stderr
    assert (repo / "live" / "greeting.welcome.j2").read_text() == welcome.read_text()
    status, audit = api(forge, editor, "GET", "/api/v1/manage/organisations/acme/audit?action=version.approve")
    assert status == 200 and audit["items"][0]["actor"] == "reviewer"
    # The key's reads are in the audit trail, once per path and hour however often CI pulled; its changes name it.
    status, reads = api(forge, editor, "GET", "/api/v1/manage/organisations/acme/audit?action=api_key.read")
    files = "organisations/acme/projects/support-bot/sets/core/files"
    pulls = [e for e in reads["items"] if e["data"]["resource"] == files]
    assert status == 200 and len(pulls) in (1, 2) and pulls[0]["actor"] == "editor"  # 2: the test crossed an hour
    assert pulls[0]["data"]["prefix"] == editor[:16]
    status, pushes = api(forge, editor, "GET", "/api/v1/manage/organisations/acme/audit?action=prompt_set.submit")
    assert pushes["items"][0]["data"]["api_key"] == editor[:16]


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
