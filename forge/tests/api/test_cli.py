"""``anvil-forge apikey create|list|revoke`` in-process: the key alone on stdout, listed by prefix, revoked."""

from __future__ import annotations

import pytest

from anvil_forge.api.keys import api_key_authenticate
from anvil_forge.cli import main

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_prints_the_key_alone_on_stdout_and_revoke_takes_its_prefix(team, capsys):
    org = team.organisation.slug
    user = team.editor.get_username()
    assert main(["apikey", "create", user, "--name", "ci", "--org", org, "--read-only", "--expires-days", "7"]) == 0
    out, err = capsys.readouterr()
    raw = out.strip()
    key = api_key_authenticate(raw)
    assert out == raw + "\n" and key is not None and key.read_only and key.organisation.slug == org
    assert key.prefix in err and "shown once" in err

    assert main(["apikey", "list", user]) == 0
    listing = capsys.readouterr().out
    assert key.prefix in listing and "read-only" in listing and raw not in listing

    assert main(["apikey", "revoke", key.prefix]) == 0
    assert api_key_authenticate(raw) is None
    assert main(["apikey", "revoke", key.prefix]) == 1


def test_unknown_users_and_organisations_are_refused_with_one_line(team, capsys):
    assert main(["apikey", "create", "nobody", "--name", "x"]) == 1
    assert "No active user named nobody" in capsys.readouterr().err
    assert main(["apikey", "create", team.editor.get_username(), "--name", "x", "--org", "nope"]) == 1
    assert main(["apikey", "create", team.editor.get_username(), "--name", "x", "--expires-days", "0"]) == 1
