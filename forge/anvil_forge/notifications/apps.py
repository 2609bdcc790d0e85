from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "anvil_forge.notifications"
    label = "notifications"
