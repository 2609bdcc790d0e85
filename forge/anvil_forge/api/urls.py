"""``/api/v1/manage/``: the management API (see ``views``), used with a personal API key."""

from django.urls import path

from anvil_forge.api import views
from anvil_forge.api.views import READ, WRITE, endpoint

app_name = "manage_api"

ORG = "organisations/<slug:organisation>"
PROJECT = ORG + "/projects/<slug:project>"
SET = PROJECT + "/sets/<slug:set_slug>"
VERSION = SET + "/versions/<int:number>"
FILES = {"_files": True}  # endpoints that take prompt files: a larger body limit

urlpatterns = [
    path("organisations", endpoint(GET=(views.organisations, READ)), name="organisations"),
    path(ORG, endpoint(GET=(views.organisation, READ)), name="organisation"),
    path(ORG + "/projects", endpoint(GET=(views.projects, READ)), name="projects"),
    path(ORG + "/instances", endpoint(GET=(views.instances, READ)), name="instances"),
    path(ORG + "/audit", endpoint(GET=(views.audit, READ)), name="audit"),
    path(PROJECT, endpoint(GET=(views.project, READ)), name="project"),
    path(PROJECT + "/environments", endpoint(GET=(views.environments, READ)), name="environments"),
    path(PROJECT + "/releases", endpoint(GET=(views.releases, READ)), name="releases"),
    path(PROJECT + "/releases/<int:release_id>", endpoint(GET=(views.release, READ)), name="release"),
    path(PROJECT + "/sets", endpoint(GET=(views.sets, READ), POST=(views.set_create, WRITE)), name="sets"),
    path(SET, endpoint(GET=(views.set_detail, READ)), name="set"),
    path(SET + "/prompts", endpoint(GET=(views.prompts, READ), POST=(views.prompt_create, WRITE)), name="prompts"),
    path(SET + "/prompts/<str:key>", endpoint(GET=(views.prompt, READ), PATCH=(views.prompt_update, WRITE)),
         name="prompt"),
    path(SET + "/submit", endpoint(POST=(views.set_submit, WRITE)), name="submit"),
    path(SET + "/rollback", endpoint(POST=(views.set_rollback, WRITE)), name="rollback"),
    path(SET + "/files", endpoint(GET=(views.set_files, READ), POST=(views.set_push, WRITE)), FILES, name="files"),
    path(SET + "/check", endpoint(POST=(views.set_check, READ)), FILES, name="check"),
    path(SET + "/versions", endpoint(GET=(views.versions, READ)), name="versions"),
    path(VERSION, endpoint(GET=(views.version, READ)), name="version"),
    path(VERSION + "/approve", endpoint(POST=(views.version_approve, WRITE)), name="approve"),
    path(VERSION + "/request-changes", endpoint(POST=(views.version_request_changes, WRITE)), name="request_changes"),
    path(VERSION + "/publish", endpoint(POST=(views.version_publish, WRITE)), name="publish"),
]
