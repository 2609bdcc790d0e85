"""``anvil-forge token create|list|revoke`` against the test database."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.cli import main
from anvil_forge.distribution.models import AccessToken
from anvil_forge.distribution.services import token_authenticate


@pytest.fixture
def where(project):
    return f"{project.organisation.slug}/{project.slug}"


def test_create_prints_the_token_once_on_the_first_line_and_audits_as_the_console(where, capsys):
    assert main(["token", "create", where, "--environment", "production", "--kind", "live", "--name", "web"]) == 0
    out = capsys.readouterr().out.splitlines()
    raw = out[0]
    assert raw.startswith("anvil_live_") and token_authenticate(raw, kind="live") is not None
    assert raw not in "\n".join(out[1:])
    assert AuditEvent.objects.get(action="token.create").actor_label == "anvil-forge token create"


def test_create_with_expiry_sets_it(where, capsys):
    main(["token", "create", where, "--environment", "staging", "--kind", "peer", "--name", "b", "--expires-in-days=3"])
    token = AccessToken.objects.get()
    assert token.kind == "peer" and token.environment.slug == "staging" and token.expires_at is not None


@pytest.mark.parametrize("days", ["0", "99999999"])
def test_create_with_an_expiry_out_of_range_is_one_clear_line_and_makes_nothing(where, capsys, days):
    code = main(["token", "create", where, "--environment", "staging", "--kind", "live", "--name", "b",
                 f"--expires-in-days={days}"])
    assert code == 1
    assert "--expires-in-days must be a whole number of days from 1 to 3650" in capsys.readouterr().err
    assert not AccessToken.objects.exists()


def test_list_shows_prefixes_and_status_never_the_token(where, capsys):
    main(["token", "create", where, "--environment", "production", "--kind", "live", "--name", "web"])
    raw = capsys.readouterr().out.splitlines()[0]
    assert main(["token", "list", where]) == 0
    listing = capsys.readouterr().out
    assert raw[:17] in listing and raw not in listing and "active" in listing


def test_revoke_by_prefix_revokes_and_unknown_prefix_is_an_error(where, capsys):
    main(["token", "create", where, "--environment", "production", "--kind", "live", "--name", "web"])
    raw = capsys.readouterr().out.splitlines()[0]

    assert main(["token", "revoke", raw[:17]]) == 0
    assert token_authenticate(raw, kind="live") is None
    assert main(["token", "revoke", raw[:17]]) == 1
    assert "No active token" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "create", "nope", "--environment=production", "--kind=live", "--name=x"], "ORG/PROJECT"),
        (["token", "create", "acme/none", "--environment=production", "--kind=live", "--name=x"], "No project"),
        (["token", "revoke", "not-a-token"], "not a token prefix"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(where, capsys, args, message):
    assert main(args) == 1
    assert message in capsys.readouterr().err


def test_unknown_environment_names_the_ones_that_exist(where, capsys):
    assert main(["token", "create", where, "--environment", "qa", "--kind", "live", "--name", "x"]) == 1
    err = capsys.readouterr().err
    assert "no environment 'qa'" in err and "production" in err and "staging" in err
