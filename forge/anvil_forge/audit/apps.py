from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "anvil_forge.audit"
    label = "audit"
