"""The Forges pages: health badges, browsing, connecting, copying; a failing peer is a message, not an error page."""

from __future__ import annotations

import pytest
from django.test import Client

from anvil_forge.peering import services
from anvil_forge.peering.models import Peer, RemoteProjectReference, SetSource
from forge.tests.peering.stub_peer import serve_project
from forge.tests.peering.test_services import TOKEN, V1, V2
from tests.forge_process import free_port


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def remote(peer_server):
    serve_project(peer_server, sets={"core": [V1, V2]})
    return peer_server


@pytest.fixture
def peer(team, remote) -> Peer:
    return services.peer_create(actor=team.admin, organisation=team.organisation, name="b", url=remote.url,
                                token=TOKEN)


def test_forges_page_lists_peers_with_health_and_offers_adding_to_admins_only(team, peer):
    services.peer_check(actor=team.admin, peer=peer, organisation=team.organisation)
    viewer_page = signed_in(team.viewer).get("/forges/").content.decode()
    assert "healthy" in viewer_page and peer.url in viewer_page
    assert "Add a peer" not in viewer_page
    assert "Add a peer" in signed_in(team.admin).get("/forges/").content.decode()


def test_admin_adds_a_peer_in_the_interface_and_the_token_is_never_shown_again(team, remote):
    client = signed_in(team.admin)
    response = client.post(f"/forges/{team.organisation.slug}/add", {"name": "b", "url": remote.url, "token": TOKEN})
    assert response.status_code == 302
    for url in ("/forges/", response["Location"]):
        page = client.get(url, follow=True).content.decode()
        assert TOKEN not in page
    assert Peer.objects.get(name="b").health == "ok"


def test_editor_cannot_add_a_peer(team, remote):
    response = signed_in(team.editor).post(f"/forges/{team.organisation.slug}/add",
                                           {"name": "b", "url": remote.url, "token": TOKEN})
    assert response.status_code == 403
    assert not Peer.objects.exists()


def test_bad_token_in_the_form_is_explained_and_keeps_the_typed_fields(team, remote):
    response = signed_in(team.admin).post(f"/forges/{team.organisation.slug}/add",
                                          {"name": "b", "url": remote.url, "token": "oops"})
    page = response.content.decode()
    assert response.status_code == 400 and "not a peer token" in page and remote.url in page


def test_unreachable_peer_page_says_so_and_still_renders(team):
    down = services.peer_create(actor=team.admin, organisation=team.organisation, name="down",
                                url=f"http://127.0.0.1:{free_port()}", token=TOKEN)
    response = signed_in(team.viewer).get(f"/forges/{team.organisation.slug}/peers/{down.name}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "could not be read" in page and "unreachable" in page


def test_browse_projects_sets_versions_and_prompts(team, peer):
    client = signed_in(team.viewer)
    base = f"/forges/{team.organisation.slug}/peers/b/"
    assert "acme/support-bot" in client.get(base).content.decode()
    project_page = client.get(base + "p/acme/support-bot/").content.decode()
    assert "v2" in project_page and "read-only" in project_page
    assert "v1" in client.get(base + "p/acme/support-bot/s/core/").content.decode()
    version_page = client.get(base + "p/acme/support-bot/s/core/v/2/").content.decode()
    assert "Hi {{ name }}, welcome back!" in version_page and "help.intro" in version_page
    assert "<tr><td><code>name</code></td><td>string</td><td>yes</td>" in version_page  # the parameters table
    assert "Copy into my project" not in version_page  # a viewer may not


def test_editor_connects_a_project_and_copies_a_version(team, project, peer):
    client = signed_in(team.editor)
    base = f"/forges/{team.organisation.slug}/peers/b/p/acme/support-bot/"
    response = client.post(base + "connect")
    reference = RemoteProjectReference.objects.get()
    assert response["Location"] == f"/forges/{team.organisation.slug}/connected/{reference.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "read-only" in page and "from b" in page and "welcome back" in page
    assert "Copy into my project" in client.get(base + "s/core/v/1/").content.decode()
    response = client.post(base + "s/core/v/1/copy", {"project": project.slug})
    assert response.status_code == 302
    source = SetSource.objects.get()
    assert source.prompt_set.project == project and source.copied_version == 1


def test_connected_project_shows_the_last_copy_when_the_peer_is_down(team, peer, remote):
    reference = services.remote_project_connect(actor=team.editor, organisation=team.organisation, peer=peer,
                                                remote_organisation="acme", remote_project="support-bot")
    remote.routes.clear()
    page = signed_in(team.viewer).get(f"/forges/{team.organisation.slug}/connected/{reference.pk}/").content.decode()
    assert "could not be reached" in page and "last copy seen" in page and "welcome back" in page
    assert "peer unreachable" in signed_in(team.viewer).get("/forges/").content.decode()


def test_copied_set_offers_the_newer_peer_version_with_a_diff(team, project, peer):
    prompt_set = services.remote_version_copy(actor=team.editor, peer=peer, remote_organisation="acme",
                                              remote_project="support-bot", remote_set="core", version=1,
                                              project=project)
    client = signed_in(team.viewer)
    fragment = client.get(f"/forges/sets/{prompt_set.pk}/upstream").content.decode()
    assert "newer approved version: v2" in fragment
    diff = client.get(f"/forges/sets/{prompt_set.pk}/upstream/diff").content.decode()
    assert "help.intro" in diff and "farewell" in diff and "welcome back" in diff


def test_upstream_fragment_is_empty_for_a_local_set_and_hidden_from_other_organisations(team, other_team, prompt_set):
    assert signed_in(team.viewer).get(f"/forges/sets/{prompt_set.pk}/upstream").content.decode().strip() == ""
    assert signed_in(other_team.owner).get(f"/forges/sets/{prompt_set.pk}/upstream").status_code == 404


def test_pages_need_sign_in(peer):
    assert Client().get("/forges/").status_code == 302


def test_text_from_a_peer_is_escaped_never_run(team, peer_server):
    serve_project(peer_server, sets={"core": [[{"id": "x.y", "template": "<script>alert(1)</script>",
                                                 "description": "<img src=x onerror=alert(2)>"}]]})
    peer_server.json("/api/v1/peer/projects", {"items": [{"organisation": "acme", "project": "support-bot",
                                                           "name": "<script>alert(3)</script>"}],
                                                "page": 1, "per_page": 50, "total": 1, "next_page": None})
    services.peer_create(actor=team.admin, organisation=team.organisation, name="evil", url=peer_server.url,
                         token=TOKEN)
    client = signed_in(team.viewer)
    base = f"/forges/{team.organisation.slug}/peers/evil/"
    pages = [client.get(base).content.decode(), client.get(base + "p/acme/support-bot/s/core/v/1/").content.decode()]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(3)" in pages[0] and "&lt;script&gt;alert(1)" in pages[1]


def test_connection_test_never_redirects_off_site(team, peer):
    response = signed_in(team.viewer).post(f"/forges/{team.organisation.slug}/peers/b/check",
                                           {"next": "https://evil.example.com/"})
    assert response.status_code == 302 and response["Location"] == f"/forges/{team.organisation.slug}/"


SECRET = "db_password=hunter2"


def test_a_peer_error_body_is_never_shown_in_the_flash_message_the_pages_or_the_stored_error(team, peer_server):
    peer_server.json("/api/v1/peer/projects", {"error": f"could not connect: {SECRET}"}, status=500)
    client = signed_in(team.admin)
    response = client.post(f"/forges/{team.organisation.slug}/add", {"name": "leaky", "url": peer_server.url,
                                                                     "token": TOKEN}, follow=True)
    pages = [response.content.decode()]
    pages.append(client.post(f"/forges/{team.organisation.slug}/peers/leaky/check", follow=True).content.decode())
    pages.append(client.get(f"/forges/{team.organisation.slug}/peers/leaky/").content.decode())
    pages.append(client.get("/forges/").content.decode())
    peer = Peer.objects.get(name="leaky")
    assert "500" in peer.last_error and "hunter2" not in peer.last_error
    assert all("hunter2" not in page for page in pages)
    assert "500" in pages[0]


def test_a_peer_answering_404_for_its_projects_is_not_reported_healthy(team, peer_server):
    """The stub answers 404 to everything: nothing there is a peer FORGE."""
    client = signed_in(team.admin)
    added = client.post(f"/forges/{team.organisation.slug}/add", {"name": "nothing", "url": peer_server.url,
                                                                  "token": TOKEN}, follow=True).content.decode()
    checked = client.post(f"/forges/{team.organisation.slug}/peers/nothing/check", follow=True).content.decode()
    assert "accepts the token" not in added and "reachable, token accepted" not in checked
    assert Peer.objects.get(name="nothing").health == "error"


def test_a_loopback_peer_is_not_contacted_by_default_and_the_page_says_why(team, peer_server, settings):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = []
    serve_project(peer_server, sets={"core": [V1]})
    client = signed_in(team.admin)
    added = client.post(f"/forges/{team.organisation.slug}/add", {"name": "inside", "url": peer_server.url,
                                                                  "token": TOKEN}, follow=True).content.decode()
    viewer_page = signed_in(team.viewer).get(f"/forges/{team.organisation.slug}/peers/inside/").content.decode()
    assert "ANVIL_PEER_PRIVATE_NETWORKS" in added and "ANVIL_PEER_PRIVATE_NETWORKS" in viewer_page
    assert peer_server.requests == []


def _asked(server, path: str) -> int:
    return sum(1 for request in server.requests if request["path"].split("?")[0] == path)


def test_page_views_read_a_peer_at_a_bounded_rate_and_show_the_last_answer_meanwhile(team, peer, remote, settings):
    settings.ANVIL_PEER_PAGE_READS_PER_MINUTE = 3
    client = signed_in(team.viewer)
    pages = [client.get(f"/forges/{team.organisation.slug}/peers/b/") for _ in range(12)]
    assert all(page.status_code == 200 and "acme/support-bot" in page.content.decode() for page in pages)
    assert _asked(remote, "/api/v1/peer/projects") == 3


def test_the_connection_test_and_the_upstream_notice_are_bounded_too(team, project, peer, remote, settings):
    prompt_set = services.remote_version_copy(actor=team.editor, peer=peer, remote_organisation="acme",
                                              remote_project="support-bot", remote_set="core", version=1,
                                              project=project)
    settings.ANVIL_PEER_PAGE_READS_PER_MINUTE = 2
    client = signed_in(team.viewer)
    versions = "/api/v1/peer/projects/acme/support-bot/sets/core/versions"
    before = _asked(remote, versions)
    fragments = [client.get(f"/forges/sets/{prompt_set.pk}/upstream").content.decode() for _ in range(8)]
    assert all("newer approved version: v2" in fragment for fragment in fragments)
    assert _asked(remote, versions) - before <= 2
    before = _asked(remote, "/api/v1/peer/projects")
    for _ in range(8):
        assert client.post(f"/forges/{team.organisation.slug}/peers/b/check").status_code == 302
    assert _asked(remote, "/api/v1/peer/projects") - before <= 2
