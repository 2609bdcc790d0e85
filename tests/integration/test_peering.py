"""Two FORGEs on loopback, each with its own database: A browses B, connects, copies, follows, and copes.

B is configured as a peer of A with the CLI and a peer token B issued. A's pages are driven over HTTP as the
demo owner (a signed-in browser session without the browser). B is on loopback, which A refuses unless
``ANVIL_PEER_PRIVATE_NETWORKS`` allows it: A runs with it, and one check runs without it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest

from tests.forge_process import DEMO_PASSWORD, ForgeProcess

pytestmark = pytest.mark.integration

MAKE_V3_ON_B = """
from django.contrib.auth import get_user_model
from anvil_forge.prompts import services
from anvil_forge.prompts.models import PromptSet
users = get_user_model().objects
editor, reviewer = users.get(username="editor"), users.get(username="reviewer")
s = PromptSet.objects.get(project__organisation__slug="acme", project__slug="support-bot", slug="core")
services.prompt_set_reopen(actor=editor, prompt_set=s)
p = s.prompts.order_by("key").first()
services.prompt_update(actor=editor, prompt=p, base_revision=p.revision, template=p.template + " See you soon.")
v = services.prompt_set_submit(actor=editor, prompt_set=s)
services.version_approve(actor=reviewer, version=v)
print("VERSION", v.number)
"""

SUBMIT_AND_APPROVE_ON_A = """
from django.contrib.auth import get_user_model
from anvil_forge.peering.selectors import version_provenance
from anvil_forge.prompts import services
from anvil_forge.prompts.models import PromptSet
users = get_user_model().objects
s = PromptSet.objects.get(project__slug="support-bot", slug="core-from-b")
v = services.prompt_set_submit(actor=users.get(username="editor"), prompt_set=s)
services.version_approve(actor=users.get(username="reviewer"), version=v)
print("STATUS", s.status, "DIGEST", v.digest, "FROM", version_provenance(v)["peer"], version_provenance(v)["version"])
"""


def sign_in(forge: ForgeProcess, username: str = "owner") -> httpx.Client:
    client = httpx.Client(base_url=forge.url, timeout=20)
    client.get("/login/")
    response = client.post(
        "/login/",
        data={"username": username, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def post(client: httpx.Client, url: str, data: dict | None = None) -> httpx.Response:
    return client.post(url, data={**(data or {}), "csrfmiddlewaretoken": client.cookies["csrftoken"]})


def peer_check(forge: ForgeProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anvil_forge.cli", "peer", "check", "b", "--organisation", "acme"],
                          env=forge.env, capture_output=True, text=True, timeout=60)


def remote_digest(forge_b: ForgeProcess, raw: str, version: int) -> str:
    response = httpx.get(f"{forge_b.url}/api/v1/peer/projects/acme/support-bot/sets/core/versions/{version}",
                         headers={"Authorization": f"Bearer {raw}"}, timeout=10)
    response.raise_for_status()
    return response.json()["content_digest"]


def test_two_forges_peer_browse_connect_copy_follow_and_fail_clearly(make_forge):
    forge_b = make_forge()
    forge_a = make_forge(env={"ANVIL_PEER_PRIVATE_NETWORKS": "127.0.0.0/8"})  # B is on loopback
    raw = forge_b.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "peer",
                      "--name", "forge a").splitlines()[0].strip()
    assert raw.startswith("anvil_peer_")

    # Configure B as a peer of A with the CLI; the token is never printed back.
    added = forge_a.cli("peer", "add", "b", forge_b.url, "--token", raw, "--organisation", "acme")
    assert "reachable, token accepted" in added and raw not in added
    listing = forge_a.cli("peer", "list")
    assert "b " in listing and "ok" in listing and raw not in listing
    # Without ANVIL_PEER_PRIVATE_NETWORKS, the same FORGE does not connect to B on loopback.
    default_env = {k: v for k, v in forge_a.env.items() if k != "ANVIL_PEER_PRIVATE_NETWORKS"}
    refused = subprocess.run([sys.executable, "-m", "anvil_forge.cli", "peer", "check", "b", "--organisation", "acme"],
                             env=default_env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "ANVIL_PEER_PRIVATE_NETWORKS" in refused.stdout
    assert peer_check(forge_a).returncode == 0

    owner = sign_in(forge_a)
    # Browse B's projects, sets, versions and prompts from A.
    peer_page = owner.get("/forges/acme/peers/b/")
    assert peer_page.status_code == 200 and "acme/support-bot" in peer_page.text
    sets_page = owner.get("/forges/acme/peers/b/p/acme/support-bot/").text
    assert "core" in sets_page and "v2" in sets_page
    version_page = owner.get("/forges/acme/peers/b/p/acme/support-bot/s/core/v/2/").text
    assert "greeting.welcome" in version_page and "welcome back" in version_page

    # Connect B's project as a read-only reference.
    connected = post(owner, "/forges/acme/peers/b/p/acme/support-bot/connect")
    assert connected.status_code == 302
    reference_url = connected.headers["location"]
    reference_page = owner.get(reference_url).text
    assert "read-only" in reference_page and "from b" in reference_page and "greeting.welcome" in reference_page

    # Copy version 2 into A's project (A already has a set named core: the copy gets its own name).
    copied = post(owner, "/forges/acme/peers/b/p/acme/support-bot/s/core/v/2/copy",
                  {"project": "support-bot", "set_slug": "core-from-b"})
    assert copied.status_code == 302, copied.text[:500]
    submitted = forge_a.cli("manage", "shell", "-c", SUBMIT_AND_APPROVE_ON_A)
    b_v2_digest = remote_digest(forge_b, raw, 2)
    assert f"DIGEST {b_v2_digest}" in submitted  # the copy's version has B's digest
    assert "FROM b 2" in submitted

    forges_page = owner.get("/forges/").text
    set_id = re.search(r"/forges/sets/(\d+)/upstream/diff", forges_page).group(1)
    assert "Up to date" in owner.get(f"/forges/sets/{set_id}/upstream").text

    # B approves and publishes version 3: A offers it, with a diff.
    made = forge_b.cli("manage", "shell", "-c", MAKE_V3_ON_B)
    assert "VERSION 3" in made
    forge_b.cli("publish", "acme/support-bot/core", "--version", "3", "--environment", "production", "--as", "owner")
    notice = owner.get(f"/forges/sets/{set_id}/upstream").text
    assert "newer approved version: v3" in notice
    diff_page = owner.get(f"/forges/sets/{set_id}/upstream/diff").text
    assert "See you soon." in diff_page and "Copy v3 into core-from-b" in diff_page
    taken = post(owner, "/forges/acme/peers/b/p/acme/support-bot/s/core/v/3/copy", {"project": "support-bot"})
    assert taken.status_code == 302
    assert "Up to date" in owner.get(f"/forges/sets/{set_id}/upstream").text

    # B revokes the peer token: A says so clearly.
    prefix = raw[: len("anvil_peer_") + 6]
    forge_b.cli("token", "revoke", prefix)
    check = peer_check(forge_a)
    assert check.returncode == 1 and "token refused" in check.stdout
    page = owner.get("/forges/").text
    assert "token refused" in page and "revoked" in page
    assert "refused the token" in owner.get("/forges/acme/peers/b/").text

    # B goes down: A's pages still answer quickly, say the peer is unreachable and show the last copy seen.
    forge_b.stop()
    check = peer_check(forge_a)
    assert check.returncode == 1 and "unreachable" in check.stdout
    started = time.monotonic()
    reference_page = owner.get(reference_url)
    assert time.monotonic() - started < 7
    assert reference_page.status_code == 200
    assert "could not be reached" in reference_page.text and "greeting.welcome" in reference_page.text
    forges_page = owner.get("/forges/")
    assert forges_page.status_code == 200 and "unreachable" in forges_page.text
    assert raw not in forge_a.log() and raw not in forge_b.log()
