from django.urls import path

from anvil_forge.notifications import views

app_name = "notifications"

urlpatterns = [
    path("notifications/", views.notification_list, name="list"),
    path("notifications/read/", views.notifications_read, name="read"),
    path("notifications/<int:notification_id>/", views.notification_open, name="open"),
]
