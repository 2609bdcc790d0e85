"""Fixtures for the FORGE's Django tests. Data is built with ``forge.tests.factories`` (real services)."""

from __future__ import annotations

import pytest

from forge.tests import factories


@pytest.fixture
def team(db) -> factories.Team:
    """An organisation with one member per role: ``team.owner``, ``team.admin``, ``team.editor``..."""
    return factories.make_org_with_members()


@pytest.fixture
def other_team(db) -> factories.Team:
    """A second organisation, whose members must never see ``team``'s data (and the reverse)."""
    return factories.make_org_with_members()


@pytest.fixture
def project(team):
    """A project of ``team`` with production and staging (staging accepts review versions)."""
    return factories.make_project(team.organisation, actor=team.owner)


@pytest.fixture
def prompt_set(project, team):
    """A LIVE prompt set of ``project`` with two prompts, made by ``team.editor``."""
    return factories.make_prompt_set_with_prompts(project, actor=team.editor)
