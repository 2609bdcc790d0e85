"""``anvil-forge peer add|list|check|remove`` from the console: audited, never printing the token."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.cli import main
from anvil_forge.peering.models import Peer
from forge.tests.peering.stub_peer import serve_project
from forge.tests.peering.test_services import TOKEN, V1


@pytest.fixture
def remote(peer_server):
    serve_project(peer_server, sets={"core": [V1]})
    return peer_server


def test_add_list_check_remove(team, remote, capsys):
    org = team.organisation.slug
    assert main(["peer", "add", "b", remote.url, "--token", TOKEN, "--organisation", org]) == 0
    out = capsys.readouterr().out
    assert "reachable, token accepted" in out and TOKEN not in out
    assert Peer.objects.get(name="b").source == "cli"
    assert AuditEvent.objects.filter(action="peer.create", actor_label="anvil-forge peer add").exists()

    assert main(["peer", "list", "--organisation", org]) == 0
    listing = capsys.readouterr().out
    assert "b" in listing and "ok" in listing and TOKEN[:17] in listing and TOKEN not in listing

    assert main(["peer", "check", "b", "--organisation", org]) == 0
    remote.json("/api/v1/peer/projects", {"error": "invalid token"}, status=401)
    assert main(["peer", "check", "b", "--organisation", org]) == 1
    assert "token refused" in capsys.readouterr().out

    assert main(["peer", "remove", "b", "--organisation", org]) == 0
    assert not Peer.objects.exists()


def test_token_from_an_environment_variable(team, remote, monkeypatch, capsys):
    monkeypatch.setenv("B_TOKEN", TOKEN)
    assert main(["peer", "add", "b", remote.url, "--token-env", "B_TOKEN", "--org", team.organisation.slug]) == 0


def test_several_organisations_need_to_be_named(team, other_team, remote, capsys):
    assert main(["peer", "add", "b", remote.url, "--token", TOKEN]) == 1
    assert "--organisation" in capsys.readouterr().err


def test_unknown_peer_is_a_clear_error(team, capsys):
    assert main(["peer", "remove", "nope", "--organisation", team.organisation.slug]) == 1
    assert "No peer FORGE named nope" in capsys.readouterr().err
