from django.urls import path

from anvil_forge.web.views import auth, editor, organisation, project, sets, tokens, versions

app_name = "web"

SET = "o/<slug:org>/p/<slug:project>/s/<slug:prompt_set>/"
PROMPT = SET + "prompts/<str:key>/"

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.login_view, name="login"),
    path("logout/", auth.logout_view, name="logout"),
    path("switch/", auth.switch_organisation, name="switch_organisation"),
    path("o/<slug:org>/", organisation.projects, name="projects"),
    path("o/<slug:org>/instances/", organisation.instances, name="instances"),
    path("o/<slug:org>/audit/", organisation.audit, name="audit"),
    path("o/<slug:org>/tokens/", tokens.token_list, name="tokens"),
    path("o/<slug:org>/tokens/<int:token_id>/revoke/", tokens.token_revoke, name="token_revoke"),
    path("o/<slug:org>/p/<slug:project>/", project.project_detail, name="project"),
    path("o/<slug:org>/p/<slug:project>/sets/add/", project.prompt_set_add, name="prompt_set_add"),
    path(SET, sets.set_detail, name="set"),
    path(SET + "add/", sets.prompt_add, name="prompt_add"),
    path(SET + "submit/", sets.set_submit, name="set_submit"),
    path(SET + "review/", sets.set_review, name="set_review"),
    path(SET + "reopen/", sets.set_reopen, name="set_reopen"),
    path(SET + "versions/", versions.version_list, name="versions"),
    path(SET + "diff/", versions.version_diff, name="diff"),
    path(SET + "versions/<int:number>/", versions.version_detail, name="version"),
    path(SET + "versions/<int:number>/rollback/", versions.version_rollback, name="rollback"),
    path(SET + "versions/<int:number>/publish/<slug:environment>/", versions.version_publish, name="publish"),
    path(SET + "releases/<int:release_id>/", versions.release_detail, name="release"),
    path(SET + "releases/<int:release_id>/acks/", versions.release_acks, name="release_acks"),
    path(PROMPT, editor.prompt_edit, name="prompt"),
    path(PROMPT + "check/", editor.prompt_check, name="prompt_check"),
    path(PROMPT + "preview/", editor.prompt_preview_fragment, name="prompt_preview"),
    path(PROMPT + "rename/", editor.prompt_rename, name="prompt_rename"),
    path(PROMPT + "delete/", editor.prompt_delete, name="prompt_delete"),
]
