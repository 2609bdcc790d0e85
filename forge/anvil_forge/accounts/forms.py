"""The sign-in form: Django's, with a clear message when sign-ins are rate limited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from anvil_forge.accounts.backends import login_is_limited


class RateLimitedAuthenticationForm(AuthenticationForm):
    """Use as ``LoginView.as_view(authentication_form=RateLimitedAuthenticationForm)``."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "rate_limited": "Too many failed sign-ins for this account or from this address. Wait a few minutes and "
        "try again.",
    }

    def clean(self) -> dict[str, Any]:
        if login_is_limited(self.request, self.data.get("username")):
            raise forms.ValidationError(self.error_messages["rate_limited"], code="rate_limited")
        return super().clean()
