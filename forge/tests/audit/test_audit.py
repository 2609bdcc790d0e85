"""The audit trail: append-only, written in the change's transaction, read only by members."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from anvil_forge.audit.models import AuditEvent, AuditEventRefused
from anvil_forge.audit.selectors import audit_events_for
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts import services
from forge.tests import factories


def test_saving_an_existing_event_again_is_refused(team):
    event = AuditEvent.objects.filter(organisation=team.organisation).first()
    event.action = "tampered"

    with pytest.raises(AuditEventRefused):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).action != "tampered"


def test_deleting_an_event_or_a_queryset_is_refused(team):
    event = AuditEvent.objects.filter(organisation=team.organisation).first()
    count = AuditEvent.objects.count()

    with pytest.raises(AuditEventRefused):
        event.delete()
    with pytest.raises(AuditEventRefused):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AuditEventRefused):
        AuditEvent.objects.all().update(action="tampered")
    with pytest.raises(AuditEventRefused):
        AuditEvent.objects.bulk_update([event], ["action"])
    assert AuditEvent.objects.count() == count


def test_audit_record_outside_a_transaction_is_a_programming_error(team):
    # pytest-django wraps each test in a transaction: pretend to be outside any atomic block.
    connection = transaction.get_connection()
    connection.in_atomic_block = False
    try:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            audit_record(actor=team.owner, action="x", obj=None, organisation=team.organisation)
    finally:
        connection.in_atomic_block = True


def test_a_refused_change_leaves_no_audit_row(team, prompt_set):
    before = AuditEvent.objects.count()
    with pytest.raises(ApplicationError):
        services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="bad id", template="x")
    assert AuditEvent.objects.count() == before


def test_members_read_their_organisations_events_only(team, other_team, prompt_set):
    factories.make_project(other_team.organisation, actor=other_team.owner)

    mine = list(audit_events_for(actor=team.viewer))
    theirs = list(audit_events_for(actor=other_team.viewer))

    assert mine and theirs
    assert {e.organisation_id for e in mine} == {team.organisation.pk}
    assert {e.organisation_id for e in theirs} == {other_team.organisation.pk}
    assert list(audit_events_for(actor=other_team.owner, project=prompt_set.project)) == []


def test_filters_by_project_actor_action_prefix_and_time(team, project, prompt_set):
    events = audit_events_for(actor=team.viewer, project=project, actor_username=team.editor.username)
    assert {e.action for e in events} == {"prompt_set.create", "prompt.create"}

    assert {e.action for e in audit_events_for(actor=team.viewer, action="prompt.")} == {"prompt.create"}
    assert audit_events_for(actor=team.viewer, action="prompt_set.create").count() == 1
    now = timezone.now()
    assert audit_events_for(actor=team.viewer, since=now + timedelta(seconds=1)).count() == 0
    assert audit_events_for(actor=team.viewer, until=now - timedelta(days=1)).count() == 0
    newest_first = list(audit_events_for(actor=team.viewer))
    assert newest_first == sorted(newest_first, key=lambda e: (e.created_at, e.id), reverse=True)


@pytest.mark.django_db
def test_anonymous_reads_nothing():
    from django.contrib.auth.models import AnonymousUser

    assert list(audit_events_for(actor=AnonymousUser())) == []


def test_what_audit_record_imports_is_loaded_with_django_not_inside_the_first_transaction(tmp_path):
    """``audit_record`` runs inside the transaction of every change. The modules it imports in its body (they
    import the audit service, so it cannot import them at its top) are loaded when Django is set up: in a new
    ``anvil-forge publish`` process their ~90 ms of imports came between the release row and its COMMIT."""
    import ast
    import inspect
    import os
    import subprocess
    import sys

    from anvil_forge.audit import services

    tree = ast.parse(inspect.getsource(services.audit_record).lstrip())
    modules = sorted({node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module})
    assert modules, "audit_record imports nothing in its body any more: this test has nothing to check"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ANVIL_"))}
    env.update({"DEBUG": "true", "ANVIL_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "anvil_forge.settings"})
    code = "import sys, django; django.setup(); print(' '.join(m for m in sys.argv[1:] if m not in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code, *modules], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"loaded only inside a transaction: {result.stdout.strip()}"
