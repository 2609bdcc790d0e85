from django.urls import path

from anvil_forge.web.views import auth, organisation, project, tokens

app_name = "web"

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.login_view, name="login"),
    path("logout/", auth.logout_view, name="logout"),
    path("switch/", auth.switch_organisation, name="switch_organisation"),
    path("o/<slug:org>/", organisation.projects, name="projects"),
    path("o/<slug:org>/instances/", organisation.instances, name="instances"),
    path("o/<slug:org>/audit/", organisation.audit, name="audit"),
    path("o/<slug:org>/tokens/", tokens.token_list, name="tokens"),
    path("o/<slug:org>/p/<slug:project>/", project.project_detail, name="project"),
]
