"""Peers, connected projects and copies: who may do what, what is kept, and what a failing peer leaves behind."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.peering import selectors, services
from anvil_forge.peering.models import Peer, PeerCopy, SetSource
from anvil_forge.prompts import services as prompt_services
from anvil_forge.prompts.models import PromptSet, SetStatus
from forge.tests import factories
from forge.tests.peering.stub_peer import serve_project
from tests.forge_process import free_port

TOKEN = "anvil_peer_" + "Zx9" * 15
V1 = [
    {"id": "welcome.message", "template": "Hello {{ name }}!",
     "parameters": [{"name": "name", "type": "string", "required": True}]},
    {"id": "farewell", "template": "Goodbye."},
]
V2 = [
    {"id": "welcome.message", "template": "Hi {{ name }}, welcome back!",
     "parameters": [{"name": "name", "type": "string", "required": True}]},
    {"id": "help.intro", "template": "How can I help?"},
]


@pytest.fixture
def remote(peer_server):
    bundles = serve_project(peer_server, sets={"core": [V1, V2]})
    return peer_server, bundles


@pytest.fixture
def peer(team, remote) -> Peer:
    server, _ = remote
    return services.peer_create(actor=team.admin, organisation=team.organisation, name="b", url=server.url,
                                token=TOKEN)


def test_admin_adds_a_peer_whose_token_is_stored_only_encrypted_and_audited(team, peer):
    stored = Peer.objects.get(pk=peer.pk)
    assert TOKEN not in stored.token_encrypted and stored.token_prefix == TOKEN[:17]
    event = AuditEvent.objects.get(action="peer.create", object_id=str(peer.pk))
    assert event.actor == team.admin and TOKEN not in str(event.data)


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_only_owner_and_admin_manage_peers(team, role):
    with pytest.raises(PermissionDenied):
        services.peer_create(actor=getattr(team, role), organisation=team.organisation, name="b",
                             url="http://127.0.0.1:1", token=TOKEN)


def test_another_organisations_member_gets_not_found(team, other_team, peer):
    with pytest.raises(NotFound):
        services.peer_create(actor=other_team.owner, organisation=team.organisation, name="c",
                             url="http://127.0.0.1:1", token=TOKEN)
    with pytest.raises(NotFound):
        selectors.peer_get(actor=other_team.owner, organisation=team.organisation, name="b")
    assert list(selectors.peers_for(actor=other_team.owner, organisation=other_team.organisation)) == []


@pytest.mark.parametrize(
    "name, url, token, message",
    [
        ("b", "http://127.0.0.1:1", "anvil_live_" + "x" * 43, "live token"),
        ("b", "http://127.0.0.1:1", "hunter2", "not a peer token"),
        ("b", "ftp://example.com", TOKEN, "not an http"),
        ("B C", "http://127.0.0.1:1", TOKEN, "not a valid peer name"),
    ],
)
def test_bad_peer_input_is_refused_naming_the_problem(team, name, url, token, message):
    with pytest.raises(ApplicationError, match=message):
        services.peer_create(actor=team.admin, organisation=team.organisation, name=name, url=url, token=token)
    assert not Peer.objects.exists()


def test_duplicate_peer_name_is_a_conflict(team, peer):
    with pytest.raises(Conflict):
        services.peer_create(actor=team.owner, organisation=team.organisation, name="b", url=peer.url, token=TOKEN)


def test_connection_test_records_healthy_peer(team, peer):
    checked = services.peer_check(actor=team.viewer, peer=peer, organisation=team.organisation)
    assert checked.health == "ok" and checked.last_checked_at is not None and checked.last_error == ""


def test_connection_test_records_unreachable_peer(team):
    down = services.peer_create(actor=team.admin, organisation=team.organisation, name="down",
                                url=f"http://127.0.0.1:{free_port()}", token=TOKEN)
    checked = services.peer_check(actor=team.admin, peer=down, organisation=team.organisation)
    assert checked.health == "unreachable" and "Could not reach the peer down" in checked.last_error


def test_connection_test_records_refused_token(team, peer_server):
    peer_server.json("/api/v1/peer/projects", {"error": "invalid token"}, status=401)
    refused = services.peer_create(actor=team.admin, organisation=team.organisation, name="r", url=peer_server.url,
                                   token=TOKEN)
    checked = services.peer_check(actor=team.admin, peer=refused, organisation=team.organisation)
    assert checked.health == "token_refused" and checked.reachable and "revoked" in checked.last_error


def test_settings_peer_is_offered_to_every_organisation_with_its_token_from_the_environment(
    team, other_team, remote, settings, monkeypatch
):
    server, _ = remote
    settings.ANVIL_PEERS = f'[{{"name": "central", "url": "{server.url}", "token_env": "CENTRAL_TOKEN"}}]'
    monkeypatch.setenv("CENTRAL_TOKEN", TOKEN)
    for organisation, user in ((team.organisation, team.viewer), (other_team.organisation, other_team.viewer)):
        central = selectors.peer_get(actor=user, organisation=organisation, name="central")
        assert central.is_from_settings and central.token_encrypted == ""
        assert services.peer_check(actor=user, peer=central, organisation=organisation).health == "ok"
    assert server.requests[-1]["authorization"] == f"Bearer {TOKEN}"
    with pytest.raises(PermissionDenied, match="ANVIL_PEERS"):
        services.peer_remove(actor=team.owner, peer=central)
    monkeypatch.delenv("CENTRAL_TOKEN")
    checked = services.peer_check(actor=team.viewer, peer=central, organisation=team.organisation)
    assert "CENTRAL_TOKEN is not set" in checked.last_error


def test_remove_peer_is_audited_and_drops_its_references(team, peer):
    services.remote_project_connect(actor=team.editor, organisation=team.organisation, peer=peer,
                                    remote_organisation="acme", remote_project="support-bot")
    services.peer_remove(actor=team.admin, peer=peer)
    assert not Peer.objects.filter(pk=peer.pk).exists()
    assert AuditEvent.objects.filter(action="peer.remove", data__references=1).exists()


def test_connect_keeps_a_snapshot_and_shows_it_when_the_peer_goes_down(team, peer, remote):
    server, bundles = remote
    reference = services.remote_project_connect(actor=team.editor, organisation=team.organisation, peer=peer,
                                                remote_organisation="acme", remote_project="support-bot")
    assert reference.snapshot["sets"][0]["latest_version"] == 2
    assert reference.snapshot["sets"][0]["digest"] == bundles[("core", 2)]["content_digest"]
    assert [p["id"] for p in reference.snapshot["sets"][0]["prompts"]] == ["help.intro", "welcome.message"]
    assert AuditEvent.objects.filter(action="peer.project_connect").exists()
    server.routes.clear()
    server.json("/api/v1/peer/projects", {"error": "boom"}, status=503)
    refreshed = services.remote_project_refresh(actor=team.viewer, reference=reference)
    assert refreshed.is_stale and "503" in refreshed.last_error
    assert refreshed.snapshot["sets"][0]["latest_version"] == 2  # the last copy seen


def test_connect_an_unknown_remote_project_is_refused(team, peer):
    with pytest.raises(NotFound, match="shows no project acme/other"):
        services.remote_project_connect(actor=team.editor, organisation=team.organisation, peer=peer,
                                        remote_organisation="acme", remote_project="other")


def test_copy_makes_a_live_set_whose_submitted_version_has_the_remote_digest(team, project, peer, remote):
    _, bundles = remote
    prompt_set = services.remote_version_copy(actor=team.editor, peer=peer, remote_organisation="acme",
                                              remote_project="support-bot", remote_set="core", version=1,
                                              project=project)
    assert prompt_set.status == SetStatus.LIVE and prompt_set.slug == "core"
    assert sorted(prompt_set.prompts.values_list("key", flat=True)) == ["farewell", "welcome.message"]
    source = SetSource.objects.get(prompt_set=prompt_set)
    assert (source.peer_name, source.remote_set, source.copied_version) == ("b", "core", 1)
    event = AuditEvent.objects.get(action="peer.copy")
    assert event.data["digest"] == bundles[("core", 1)]["content_digest"] and event.data["new_set"] is True
    version = prompt_services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    assert version.digest == bundles[("core", 1)]["content_digest"]
    assert selectors.version_provenance(version) == {
        "peer": "b", "url": peer.url, "organisation": "acme", "project": "support-bot", "set": "core",
        "version": 1, "digest": bundles[("core", 1)]["content_digest"],
    }


def test_copy_of_a_newer_version_updates_the_same_set_and_reopens_it(team, project, peer, remote):
    _, bundles = remote
    copy = dict(actor=team.editor, peer=peer, remote_organisation="acme", remote_project="support-bot",
                remote_set="core", project=project)
    prompt_set = services.remote_version_copy(version=1, **copy)
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)  # LOCKED now
    source = services.set_upstream_check(actor=team.viewer, source=SetSource.objects.get(prompt_set=prompt_set))
    assert (source.copied_version, source.upstream_version) == (1, 2)
    updated = services.remote_version_copy(version=2, **copy)
    assert updated.pk == prompt_set.pk and updated.status == SetStatus.LIVE
    assert sorted(updated.prompts.values_list("key", flat=True)) == ["help.intro", "welcome.message"]
    assert PeerCopy.objects.filter(source__prompt_set=prompt_set).count() == 2
    assert PromptSet.objects.filter(project=project).count() == 1
    version = prompt_services.prompt_set_submit(actor=team.editor, prompt_set=updated)
    assert version.number == 2 and version.digest == bundles[("core", 2)]["content_digest"]


def test_copy_into_a_set_in_review_is_refused_and_changes_nothing(team, project, peer):
    copy = dict(actor=team.editor, peer=peer, remote_organisation="acme", remote_project="support-bot",
                remote_set="core", project=project)
    prompt_set = services.remote_version_copy(version=1, **copy)
    factories.make_submitted_version(prompt_set, author=team.editor)
    with pytest.raises(Conflict, match="in review"):
        services.remote_version_copy(version=2, **copy)
    assert PeerCopy.objects.count() == 1


def test_copy_over_a_local_set_of_the_same_name_asks_for_another_name(team, project, peer):
    factories.make_prompt_set_with_prompts(project, slug="core")
    with pytest.raises(Conflict, match="choose another name"):
        services.remote_version_copy(actor=team.editor, peer=peer, remote_organisation="acme",
                                     remote_project="support-bot", remote_set="core", version=1, project=project)
    copied = services.remote_version_copy(actor=team.editor, peer=peer, remote_organisation="acme",
                                          remote_project="support-bot", remote_set="core", version=1,
                                          project=project, set_slug="core-from-b")
    assert copied.slug == "core-from-b"


def test_copy_of_a_template_the_local_forge_refuses_writes_nothing(team, project, peer_server):
    serve_project(peer_server, sets={"bad": [[{"id": "ok.one", "template": "fine"},
                                              {"id": "zz.broken", "template": "{% if x %}unclosed"}]]})
    peer = services.peer_create(actor=team.admin, organisation=team.organisation, name="b2", url=peer_server.url,
                                token=TOKEN)
    with pytest.raises(ApplicationError):
        services.remote_version_copy(actor=team.editor, peer=peer, remote_organisation="acme",
                                     remote_project="support-bot", remote_set="bad", version=1, project=project)
    assert not PromptSet.objects.filter(project=project, slug="bad").exists()
    assert not SetSource.objects.exists() and not AuditEvent.objects.filter(action="peer.copy").exists()


def test_viewer_cannot_copy(team, project, peer):
    with pytest.raises(PermissionDenied):
        services.remote_version_copy(actor=team.viewer, peer=peer, remote_organisation="acme",
                                     remote_project="support-bot", remote_set="core", version=1, project=project)


def test_upstream_check_of_an_unreachable_peer_records_why(team, project, peer, remote):
    server, _ = remote
    prompt_set = services.remote_version_copy(actor=team.editor, peer=peer, remote_organisation="acme",
                                              remote_project="support-bot", remote_set="core", version=2,
                                              project=project)
    server.routes.clear()
    source = services.set_upstream_check(actor=team.viewer, source=SetSource.objects.get(prompt_set=prompt_set))
    assert source.upstream_error and source.upstream_checked_at is not None


def test_connecting_is_bounded_in_total_time_not_only_per_request(team, peer_server, settings):
    from forge.tests.peering.stub_peer import slow

    settings.ANVIL_PEER_TIMEOUT_SECONDS = 0.5
    serve_project(peer_server, sets={f"s{i}": [V1] for i in range(6)})
    for i in range(6):  # each bundle just inside the per-request timeout
        route = f"/api/v1/peer/projects/acme/support-bot/sets/s{i}/versions/1"
        peer_server.routes[route] = slow(0.4, then=peer_server.routes[route])
    peer = services.peer_create(actor=team.admin, organisation=team.organisation, name="slow", url=peer_server.url,
                                token=TOKEN)
    import time

    started = time.monotonic()
    with pytest.raises(ApplicationError, match=r"took longer than 1\.5 s in all"):
        services.remote_project_connect(actor=team.editor, organisation=team.organisation, peer=peer,
                                        remote_organisation="acme", remote_project="support-bot")
    assert time.monotonic() - started < 3


def test_peer_answering_garbage_is_not_shown_healthy(team, peer_server):
    from forge.tests.peering.stub_peer import reply

    peer_server.routes["/api/v1/peer/projects"] = reply(b"<html>maintenance</html>", content_type="text/html")
    odd = services.peer_create(actor=team.admin, organisation=team.organisation, name="odd", url=peer_server.url,
                               token=TOKEN)
    checked = services.peer_check(actor=team.admin, peer=odd, organisation=team.organisation)
    assert checked.health == "error" and "not JSON" in checked.last_error


def test_peer_urls_are_held_to_the_allowed_hosts(team, remote, settings):
    server, _ = remote
    settings.ANVIL_PEER_ALLOWED_HOSTS = ["forge.example.com", ".partner.example"]
    for url in ("http://10.0.0.8:8000", "http://169.254.169.254", "https://forge.example.com.evil.test",
                server.url):
        with pytest.raises(ApplicationError, match="not in ANVIL_PEER_ALLOWED_HOSTS"):
            services.peer_create(actor=team.admin, organisation=team.organisation, name="x", url=url, token=TOKEN)
    assert not Peer.objects.exists()
    for name, url in (("a", "https://forge.example.com"), ("b", "https://eu.partner.example:8443"),
                      ("c", "https://PARTNER.example")):
        services.peer_create(actor=team.admin, organisation=team.organisation, name=name, url=url, token=TOKEN)


def test_a_peer_whose_host_is_no_longer_allowed_is_not_contacted(team, remote, peer, settings):
    server, _ = remote
    assert services.peer_check(actor=team.admin, peer=peer, organisation=team.organisation).health == "ok"
    settings.ANVIL_PEER_ALLOWED_HOSTS = ["forge.example.com"]
    before = len(server.requests)
    checked = services.peer_check(actor=team.admin, peer=peer, organisation=team.organisation)
    assert checked.health == "unreachable"
    assert "not in ANVIL_PEER_ALLOWED_HOSTS" in checked.last_error
    assert len(server.requests) == before
