from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "anvil_forge.accounts"
    label = "accounts"
