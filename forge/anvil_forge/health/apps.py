from django.apps import AppConfig


class HealthConfig(AppConfig):
    """What the LIVE instances report of each release when the application used it (check-in ``signals``)."""

    name = "anvil_forge.health"
    label = "health"
