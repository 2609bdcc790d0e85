"""Test cases in the pages: the editor's "Test cases" section, the review's results and the approve override."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, VersionState

pytestmark = pytest.mark.django_db

TEMPLATE = "Hello {{ name }}!{% if plan == 'pro' %} Thanks for being a Pro customer.{% endif %}"
FORM = {
    "template": TEMPLATE,
    "param-0-name": "name", "param-0-type": "string", "param-0-required": "1",
    "param-1-name": "plan", "param-1-type": "string", "param-1-default": "free",
}
CASE = {"case-0-name": "ada", "case-0-value-name": "Ada", "case-0-check-0-kind": "contains",
        "case-0-check-0-value": "Goodbye"}


def _prompt(prompt_set):
    return Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")


def test_add_a_test_case_shows_a_row_without_saving(as_user, team, urls, prompt_set):
    prompt = _prompt(prompt_set)

    body = as_user(team.editor).post(urls["prompt"], {**FORM, "base_revision": prompt.revision, "add_case": "1"}
                                     ).content.decode()

    assert 'name="case-0-name" value="case 1"' in body
    assert 'name="case-0-value-name"' in body and 'name="case-0-check-0-kind"' in body
    assert _prompt(prompt_set).tests == []


def test_saving_a_test_case_stores_it_and_the_editor_shows_its_failing_check(as_user, team, urls, prompt_set):
    prompt = _prompt(prompt_set)
    client = as_user(team.editor)

    response = client.post(urls["prompt"], {**FORM, **CASE, "save": "1", "base_revision": prompt.revision},
                           follow=True)

    assert _prompt(prompt_set).tests == [
        {"name": "ada", "values": {"name": "Ada"}, "checks": [{"kind": "contains", "value": "Goodbye"}]}]
    body = response.content.decode()
    assert "1 of 1 test case fails" in body
    assert 'data-testid="case-result">fails</span>' in body
    assert "not found in the rendered text" in body


def test_the_preview_starts_from_the_first_test_case(as_user, team, urls, prompt_set):
    prompt = _prompt(prompt_set)
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=[
        {"name": "pro", "values": {"name": "Ada", "plan": "pro"}, "checks": []}])

    body = as_user(team.editor).get(urls["prompt"]).content.decode()

    assert 'name="sample-name" form="editor-form" value="Ada"' in body
    assert 'data-testid="preview">Hello Ada! Thanks for being a Pro customer.</pre>' in body


def test_an_invalid_test_case_is_not_saved_and_the_typed_rows_come_back(as_user, team, urls, prompt_set):
    prompt = _prompt(prompt_set)
    data = {**FORM, **CASE, "case-0-check-0-kind": "regex", "case-0-check-0-value": "(unclosed", "save": "1",
            "base_revision": prompt.revision}

    response = as_user(team.editor).post(urls["prompt"], data)

    assert response.status_code == 400
    body = response.content.decode()
    assert "welcome.message, test case &#x27;ada&#x27;, check 1: the regular expression does not compile" in body
    assert 'value="(unclosed"' in body
    assert _prompt(prompt_set).tests == []


def test_remove_buttons_drop_a_check_or_a_case_without_saving(as_user, team, urls, prompt_set):
    prompt = _prompt(prompt_set)
    client = as_user(team.editor)
    base = {**FORM, **CASE, "base_revision": prompt.revision}

    no_check = client.post(urls["prompt"], {**base, "remove_check": "0-0"}).content.decode()
    no_case = client.post(urls["prompt"], {**base, "remove_case": "0"}).content.decode()

    assert 'name="case-0-name" value="ada"' in no_check and 'name="case-0-check-0-kind"' not in no_check
    assert 'name="case-0-name"' not in no_case and "No test cases yet." in no_case


def _submit_failing(prompt_set, team):
    prompt = _prompt(prompt_set)
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=[
        {"name": "ada", "values": {"name": "Ada"}, "checks": [{"kind": "contains", "value": "Goodbye"}]}])
    return services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)


def test_the_review_shows_each_samples_result_and_offers_the_override(as_user, team, urls, prompt_set):
    _submit_failing(prompt_set, team)

    body = as_user(team.reviewer).get(urls["set"]).content.decode()

    assert 'data-testid="tests-summary">1 failing' in body
    assert "welcome.message" in body and "ada" in body
    assert "contains &#x27;Goodbye&#x27;" in body
    assert 'name="override"' in body


def test_approve_without_the_override_is_refused_and_with_it_and_a_comment_is_audited(as_user, team, urls,
                                                                                     prompt_set):
    version = _submit_failing(prompt_set, team)
    client = as_user(team.reviewer)

    refused = client.post(urls["set"] + "review/", {"version": version.number, "decision": "approve"})
    no_comment = client.post(urls["set"] + "review/", {"version": version.number, "decision": "approve",
                                                       "override": "1"})
    approved = client.post(urls["set"] + "review/", {"version": version.number, "decision": "approve",
                                                     "override": "1", "comment": "The check is wrong"})

    assert refused.status_code == 400 and "failing test cases (welcome.message: ada)" in refused.content.decode()
    assert no_comment.status_code == 400 and "needs a comment" in no_comment.content.decode()
    assert "checked" in no_comment.content.decode().split('id="review-override"')[1].split(">")[0]
    assert approved.status_code == 302
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED
    assert AuditEvent.objects.filter(action="prompt_set.approve_override", actor=team.reviewer).exists()


def test_a_version_without_test_cases_is_reviewed_as_before(as_user, team, urls, prompt_set):
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    body = as_user(team.reviewer).get(urls["set"]).content.decode()

    assert 'data-testid="test-results"' not in body and 'name="override"' not in body


def test_a_versions_page_shows_the_results_recorded_at_submit(as_user, team, urls, prompt_set):
    version = _submit_failing(prompt_set, team)
    services.version_approve(actor=team.reviewer, version=version, override=True, comment="Known")

    body = as_user(team.viewer).get(urls["versions"] + f"{version.number}/").content.decode()

    assert 'data-testid="tests-summary">1 failing' in body
    assert "Run when version 1 was submitted." in body


def test_a_change_of_test_cases_only_shows_in_the_diff_between_versions(as_user, team, urls, prompt_set):
    first = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_request_changes(actor=team.reviewer, version=first, comment="add tests")
    second = _submit_failing(prompt_set, team)

    body = as_user(team.viewer).get(urls["set"] + f"diff/?a={first.number}&b={second.number}").content.decode()

    assert second.digest == first.digest  # the prompts, and so their bundle, did not change
    assert "test cases: none → ada" in body
