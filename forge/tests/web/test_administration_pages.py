"""The administration pages through Django's test client: first run, organisations, projects, members,
invitations, settings, the account page and password resets; and one real SMTP exchange (aiosmtpd)."""

from __future__ import annotations

import re
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core import mail as outbox
from django.test import Client

from anvil_forge.accounts import services as account_services
from anvil_forge.accounts.models import Invitation, Membership
from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution import services as distribution_services
from anvil_forge.prompts.models import Environment, Project, PromptSet
from forge.tests import factories

pytestmark = pytest.mark.django_db
User = get_user_model()
PASSWORD = "a-long-enough-passphrase"


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _text(response) -> str:
    return response.content.decode()


# First run ------------------------------------------------------------------------------------------------


def test_setup_page_creates_owner_organisation_project_and_signs_in_once():
    token = account_services.setup_link_ensure()
    client = Client()
    assert client.get(f"/setup/{token}/").status_code == 200
    response = client.post(
        f"/setup/{token}/",
        {
            "username": "ada", "password": PASSWORD, "password2": PASSWORD, "organisation_slug": "acme",
            "organisation_name": "Acme", "project_slug": "support-bot", "project_name": "Support bot", "staging": "1",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/o/acme/p/support-bot/"
    assert client.get("/o/acme/p/support-bot/").status_code == 200  # signed in
    project = Project.objects.get(slug="support-bot")
    assert sorted(Environment.objects.filter(project=project).values_list("slug", flat=True)) == [
        "production", "staging"
    ]
    assert Client().get(f"/setup/{token}/").status_code == 404
    assert "used already" in _text(Client().get(f"/setup/{token}/"))


def test_setup_page_keeps_what_was_typed_on_an_error_and_refuses_a_wrong_token():
    token = account_services.setup_link_ensure()
    response = Client().post(
        f"/setup/{token}/",
        {"username": "ada", "password": PASSWORD, "password2": "different", "organisation_slug": "acme",
         "project_slug": "bot"},
    )
    assert response.status_code == 400 and "differ" in _text(response) and 'value="acme"' in _text(response)
    assert Client().get("/setup/not-the-token/").status_code == 404
    assert not User.objects.exists()


def test_serve_announces_the_setup_link_only_while_there_is_no_user():
    message = account_services.setup_link_announcement("http://127.0.0.1:8000")
    assert re.search(r"http://127\.0\.0\.1:8000/setup/[\w-]+/", message)
    factories.make_user()
    assert account_services.setup_link_announcement("http://127.0.0.1:8000") is None


# Organisations and projects -------------------------------------------------------------------------------


def test_any_signed_in_user_creates_an_organisation_and_owns_it():
    user = factories.make_user()
    client = _client(user)
    assert client.get("/orgs/new/").status_code == 200
    response = client.post("/orgs/new/", {"slug": "newco", "name": "New Co"})
    assert response.status_code == 302 and response["Location"] == "/o/newco/projects/new/"
    assert Membership.objects.get(user=user, organisation__slug="newco").role == "owner"
    assert "already exists" in _text(client.post("/orgs/new/", {"slug": "newco"}))
    assert Client().get("/orgs/new/").status_code == 302  # anonymous: sign in


def test_project_creation_page_makes_production_and_optionally_staging(team):
    client = _client(team.admin)
    org = team.organisation.slug
    response = client.post(f"/o/{org}/projects/new/", {"slug": "plain", "name": "Plain"})
    assert response.status_code == 302
    assert list(Environment.objects.filter(project__slug="plain").values_list("slug", flat=True)) == ["production"]
    client.post(f"/o/{org}/projects/new/", {"slug": "withstaging", "staging": "1"})
    assert Environment.objects.filter(project__slug="withstaging", slug="staging").exists()
    assert _client(team.editor).get(f"/o/{org}/projects/new/").status_code == 403


# Members and invitations ----------------------------------------------------------------------------------


def test_admin_sees_the_invitation_link_and_a_new_person_joins_through_it(team):
    org = team.organisation.slug
    admin = _client(team.admin)
    page = admin.post(f"/o/{org}/members/invite/", {"role": "editor", "email": "", "days": "7"})
    link = re.search(r'data-testid="invite-link">([^<]+)<', _text(page)).group(1)
    path = link.replace("http://testserver", "")
    assert "Pending invitations" in _text(admin.get(f"/o/{org}/members/"))
    newcomer = Client()
    assert "Join" in _text(newcomer.get(path))
    response = newcomer.post(path, {"username": "newbie", "password": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302 and response["Location"] == f"/o/{org}/"
    assert newcomer.get(f"/o/{org}/").status_code == 200
    assert Membership.objects.get(user__username="newbie").role == "editor"
    assert Client().get(path).status_code == 404  # single use


def test_a_signed_in_user_joins_with_one_click(team, other_team):
    issued = account_services.invitation_create(
        actor=team.owner, organisation=team.organisation, role="reviewer", base_url="http://testserver"
    )
    client = _client(other_team.viewer)
    response = client.post(issued.url.replace("http://testserver", ""))
    assert response.status_code == 302
    assert Membership.objects.get(user=other_team.viewer, organisation=team.organisation).role == "reviewer"


def test_members_page_changes_roles_removes_and_revokes(team):
    org = team.organisation.slug
    admin = _client(team.admin)
    viewer = Membership.objects.get(user=team.viewer, organisation=team.organisation)
    admin.post(f"/o/{org}/members/{viewer.pk}/role/", {"role": "reviewer"})
    viewer.refresh_from_db()
    assert viewer.role == "reviewer"
    owner = Membership.objects.get(user=team.owner, organisation=team.organisation)
    refused = admin.post(f"/o/{org}/members/{owner.pk}/role/", {"role": "viewer"})
    assert refused.status_code == 403 and "Only an owner" in _text(refused)
    last = _client(team.owner).post(f"/o/{org}/members/{owner.pk}/remove/")
    assert last.status_code == 409 and "last owner" in _text(last)
    assert admin.get(f"/o/{org}/members/{viewer.pk}/remove/").status_code == 200
    assert admin.post(f"/o/{org}/members/{viewer.pk}/remove/").status_code == 302
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    issued = account_services.invitation_create(
        actor=team.admin, organisation=team.organisation, role="viewer", base_url="http://testserver"
    )
    admin.post(f"/o/{org}/members/invitations/{issued.invitation.pk}/revoke/")
    assert Invitation.objects.get(pk=issued.invitation.pk).revoked_at is not None


def test_members_page_shows_roles_to_everyone_and_actions_only_to_managers(team):
    org = team.organisation.slug
    page = _text(_client(team.viewer).get(f"/o/{org}/members/"))
    assert team.owner.get_username() in page and "Invite someone" not in page
    assert "Invite someone" in _text(_client(team.admin).get(f"/o/{org}/members/"))
    assert 'value="owner"' not in _text(_client(team.admin).get(f"/o/{org}/members/")).split("Invite someone")[1]


def test_admin_issues_a_reset_link_that_sets_a_new_password(team):
    org = team.organisation.slug
    editor = Membership.objects.get(user=team.editor, organisation=team.organisation)
    page = _text(_client(team.admin).post(f"/o/{org}/members/{editor.pk}/reset-link/"))
    path = re.search(r'data-testid="reset-link">([^<]+)<', page).group(1).replace("http://testserver", "")
    client = Client()
    assert client.get(path).status_code == 200
    assert client.post(path, {"new_password": PASSWORD, "new_password2": PASSWORD}).status_code == 302
    team.editor.refresh_from_db()
    assert team.editor.check_password(PASSWORD)
    assert Client().get(path).status_code == 404


# Settings -------------------------------------------------------------------------------------------------


def test_project_settings_four_eyes_is_owner_only_and_environment_removal_says_why(team, project):
    base = f"/o/{team.organisation.slug}/p/{project.slug}/settings/"
    admin = _client(team.admin)
    assert "Only an owner changes this" in _text(admin.get(base))
    forged = admin.post(base, {"name": "Renamed", "description": "", "four_eyes_shown": "1"})  # four eyes off
    assert forged.status_code == 403 and "Only an owner" in _text(forged)
    admin.post(base, {"name": "Renamed", "description": ""})
    project.refresh_from_db()
    assert project.require_four_eyes and project.name == "Renamed"
    _client(team.owner).post(base, {"name": "Renamed", "description": "", "four_eyes_shown": "1"})
    project.refresh_from_db()
    assert not project.require_four_eyes
    assert AuditEvent.objects.filter(action="project.update", data__to__require_four_eyes=False).exists()
    distribution_services.token_create(
        actor=team.owner, project=project, environment=factories.environment(project, "staging"), kind="live",
        name="web",
    )
    refused = admin.post(base + "environments/staging/remove/")
    assert refused.status_code == 409 and "access token (web" in _text(refused)
    admin.post(base + "environments/add/", {"slug": "qa", "name": "QA", "accepts_review_versions": "1"})
    assert Environment.objects.get(project=project, slug="qa").accepts_review_versions
    admin.post(base + "environments/qa/", {"name": "Quality"})
    assert Environment.objects.get(project=project, slug="qa").name == "Quality"
    admin.post(base + "environments/qa/remove/")
    assert not Environment.objects.filter(project=project, slug="qa").exists()


def test_archiving_a_set_hides_it_from_the_project_page_and_restoring_brings_it_back(team, project, prompt_set):
    org, base = team.organisation.slug, f"/o/{team.organisation.slug}/p/{project.slug}/"
    admin = _client(team.admin)
    admin.post(f"{base}s/{prompt_set.slug}/settings/", {"name": "Renamed set", "description": ""})
    assert PromptSet.objects.get(pk=prompt_set.pk).name == "Renamed set"
    admin.post(f"{base}s/{prompt_set.slug}/archive/", {"archived": "1"})
    card = f'id="set-{prompt_set.slug}"'
    assert card not in _text(admin.get(base))
    assert "Renamed set" in _text(admin.get(base + "settings/"))  # listed among the archived, to restore
    admin.post(f"{base}s/{prompt_set.slug}/archive/", {"archived": "0"})
    assert card in _text(admin.get(f"/o/{org}/p/{project.slug}/"))


# Account --------------------------------------------------------------------------------------------------


def test_account_page_changes_the_password_and_keeps_this_session(team):
    here, elsewhere = _client(team.viewer), _client(team.viewer)
    wrong = here.post("/account/", {"current_password": "nope", "new_password": PASSWORD, "new_password2": PASSWORD})
    assert wrong.status_code == 400 and "current password" in _text(wrong)
    here.post(
        "/account/",
        {"current_password": factories.PASSWORD, "new_password": PASSWORD, "new_password2": PASSWORD},
    )
    assert here.get("/account/").status_code == 200
    assert elsewhere.get("/account/").status_code == 302


def test_sign_out_everywhere_needs_a_post_and_ends_this_session_too(team):
    client, other = _client(team.viewer), _client(team.viewer)
    assert client.get("/account/sign-out-everywhere/").status_code == 405
    assert client.post("/account/sign-out-everywhere/").status_code == 302
    assert client.get("/account/").status_code == 302 and other.get("/account/").status_code == 302
    assert Client().post("/account/sign-out-everywhere/").status_code == 302


def test_password_reset_page_without_email_points_to_an_admin(team):
    page = Client().post("/password-reset/", {"login": team.editor.get_username()})
    assert "Ask an owner or admin" in _text(page) and outbox.outbox == []


def test_password_reset_page_mails_a_link_and_says_the_same_for_unknown_accounts(team, settings):
    settings.ANVIL_EMAIL_ENABLED = True
    team.editor.email = "ed@example.com"
    team.editor.save()
    known = _text(Client().post("/password-reset/", {"login": "ed@example.com"}))
    unknown = _text(Client().post("/password-reset/", {"login": "nobody@example.com"}))
    assert "on its way" in known and "on its way" in unknown
    (message,) = outbox.outbox
    assert re.search(r"http://testserver/reset/[\w-]+/[\w-]+/", message.body)


# E-mail configuration and one real SMTP exchange ----------------------------------------------------------


def test_email_url_forms():
    from anvil_forge.accounts.mail import email_settings

    assert email_settings("")["ANVIL_EMAIL_ENABLED"] is False
    tls = email_settings("smtp+tls://me%40x.org:p%3Ass@mail.example.com")
    assert tls["EMAIL_USE_TLS"] and tls["EMAIL_PORT"] == 587 and tls["EMAIL_HOST_USER"] == "me@x.org"
    assert tls["EMAIL_HOST_PASSWORD"] == "p:ss"
    assert email_settings("smtp://mail:2525")["EMAIL_PORT"] == 2525
    assert email_settings("console://")["EMAIL_BACKEND"].endswith("console.EmailBackend")
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="scheme"):
        email_settings("http://nope")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_invitation_goes_out_over_real_smtp(team, settings):
    aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # the hook name aiosmtpd calls
            received.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    port = _free_port()
    controller = aiosmtpd_controller.Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        from anvil_forge.accounts.mail import email_settings

        for key, value in email_settings(f"smtp://127.0.0.1:{port}", "forge@example.com").items():
            setattr(settings, key, value)
        issued = account_services.invitation_create(
            actor=team.admin, organisation=team.organisation, role="editor", email="new@example.com",
            base_url="http://forge.test",
        )
    finally:
        controller.stop()
    assert issued.emailed
    ((recipients, content),) = received
    assert recipients == ["new@example.com"] and issued.url in content and "From: forge@example.com" in content
