from django.apps import AppConfig


class PromptsConfig(AppConfig):
    name = "anvil_forge.prompts"
    label = "prompts"
