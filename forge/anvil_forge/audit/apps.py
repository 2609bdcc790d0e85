from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "anvil_forge.audit"
    label = "audit"

    def ready(self) -> None:
        # ``audit_record`` runs inside the transaction of every change and calls these modules (they import
        # the audit service, so it cannot import them at its top). Loading them here, once per process, keeps
        # their ~90 ms of imports (Jinja2, prometheus_client, cryptography) out of the first transaction: in a
        # new ``anvil-forge publish`` process they were paid between the release row and its COMMIT, holding
        # the write lock and delaying the stream event by as much.
        from anvil_forge.core import metrics  # noqa: F401
        from anvil_forge.distribution import page_events  # noqa: F401
        from anvil_forge.webhooks import services  # noqa: F401
