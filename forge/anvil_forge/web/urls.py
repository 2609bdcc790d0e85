from django.urls import path

from anvil_forge.web.views import (
    account,
    administration,
    auth,
    editor,
    members,
    organisation,
    project,
    sets,
    tokens,
    versions,
)
from anvil_forge.web.views import transfer as transfer_views

app_name = "web"

SET = "o/<slug:org>/p/<slug:project>/s/<slug:prompt_set>/"
PROMPT = SET + "prompts/<str:key>/"

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.login_view, name="login"),
    path("logout/", auth.logout_view, name="logout"),
    path("switch/", auth.switch_organisation, name="switch_organisation"),
    path("setup/<str:token>/", administration.setup, name="setup"),
    path("orgs/new/", administration.organisation_new, name="organisation_new"),
    path("invite/<str:token>/", members.invite_accept, name="invite_accept"),
    path("account/", account.account, name="account"),
    path("account/sign-out-everywhere/", account.sign_out_everywhere, name="sign_out_everywhere"),
    path("password-reset/", account.password_reset, name="password_reset"),
    path("reset/<str:uidb64>/<str:token>/", account.password_reset_confirm, name="password_reset_confirm"),
    path("o/<slug:org>/members/", members.member_list, name="members"),
    path("o/<slug:org>/members/invite/", members.invitation_create, name="invitation_create"),
    path(
        "o/<slug:org>/members/invitations/<int:invitation_id>/revoke/",
        members.invitation_revoke,
        name="invitation_revoke",
    ),
    path("o/<slug:org>/members/<int:membership_id>/role/", members.member_role, name="member_role"),
    path("o/<slug:org>/members/<int:membership_id>/remove/", members.member_remove, name="member_remove"),
    path("o/<slug:org>/members/<int:membership_id>/reset-link/", members.member_reset_link, name="member_reset_link"),
    path("o/<slug:org>/projects/new/", administration.project_new, name="project_new"),
    path("o/<slug:org>/p/<slug:project>/settings/", administration.project_settings, name="project_settings"),
    path(
        "o/<slug:org>/p/<slug:project>/settings/environments/add/",
        administration.environment_add,
        name="environment_add",
    ),
    path(
        "o/<slug:org>/p/<slug:project>/settings/environments/<slug:environment>/",
        administration.environment_update,
        name="environment_update",
    ),
    path(
        "o/<slug:org>/p/<slug:project>/settings/environments/<slug:environment>/remove/",
        administration.environment_remove,
        name="environment_remove",
    ),
    path("o/<slug:org>/", organisation.projects, name="projects"),
    path("o/<slug:org>/instances/", organisation.instances, name="instances"),
    path("o/<slug:org>/audit/", organisation.audit, name="audit"),
    path("o/<slug:org>/tokens/", tokens.token_list, name="tokens"),
    path("o/<slug:org>/tokens/<int:token_id>/revoke/", tokens.token_revoke, name="token_revoke"),
    path("o/<slug:org>/p/<slug:project>/", project.project_detail, name="project"),
    path("o/<slug:org>/p/<slug:project>/sets/add/", project.prompt_set_add, name="prompt_set_add"),
    path(SET, sets.set_detail, name="set"),
    path(SET + "settings/", administration.set_settings, name="set_settings"),
    path(SET + "archive/", administration.set_archive, name="set_archive"),
    path(SET + "add/", sets.prompt_add, name="prompt_add"),
    path(SET + "submit/", sets.set_submit, name="set_submit"),
    path(SET + "review/", sets.set_review, name="set_review"),
    path(SET + "reopen/", sets.set_reopen, name="set_reopen"),
    path(SET + "import/", transfer_views.set_import, name="set_import"),
    path(SET + "versions/", versions.version_list, name="versions"),
    path(SET + "diff/", versions.version_diff, name="diff"),
    path(SET + "versions/<int:number>/", versions.version_detail, name="version"),
    path(SET + "versions/<int:number>/rollback/<slug:environment>/", versions.version_rollback, name="rollback"),
    path(SET + "versions/<int:number>/download/", transfer_views.version_download, name="version_download"),
    path(SET + "versions/<int:number>/publish/<slug:environment>/", versions.version_publish, name="publish"),
    path(SET + "releases/<int:release_id>/", versions.release_detail, name="release"),
    path(SET + "releases/<int:release_id>/acks/", versions.release_acks, name="release_acks"),
    path(PROMPT, editor.prompt_edit, name="prompt"),
    path(PROMPT + "check/", editor.prompt_check, name="prompt_check"),
    path(PROMPT + "preview/", editor.prompt_preview_fragment, name="prompt_preview"),
    path(PROMPT + "rename/", editor.prompt_rename, name="prompt_rename"),
    path(PROMPT + "delete/", editor.prompt_delete, name="prompt_delete"),
]
