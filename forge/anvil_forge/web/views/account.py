"""One's own account: change the password, sign out everywhere, personal API keys, reset a forgotten password."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from anvil_forge.accounts import mail, services
from anvil_forge.api import keys
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts.selectors import organisations_for
from anvil_forge.web.views.members import forge_url


@login_required
@never_cache
def account(request: HttpRequest) -> HttpResponse:
    error, status = "", 200
    if request.method == "POST":
        try:
            new = request.POST.get("new_password", "")
            if new != request.POST.get("new_password2", ""):
                raise ApplicationError("The two new passwords differ.")
            services.password_change(
                actor=request.user,
                current_password=request.POST.get("current_password", ""),
                new_password=new,
                keep_session=request.session.session_key,
            )
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            update_session_auth_hash(request, request.user)
            messages.success(request, "Password changed. Every other session of yours is signed out.")
            return redirect("web:account")
    return _account_page(request, error=error, status=status)


def _account_page(
    request: HttpRequest, *, error: str = "", key_error: str = "", new_key: str = "", status: int = 200
) -> HttpResponse:
    now = timezone.now()
    api_keys = list(keys.api_keys_for(actor=request.user))
    reads = keys.api_key_reads(keys=api_keys, now=now)  # the user's own keys only
    for key in api_keys:
        key.state = (  # type: ignore[attr-defined]
            "revoked" if key.revoked_at else "expired" if key.expires_at and key.expires_at <= now else "active"
        )
        key.recent_reads = reads.get(key.pk, [])  # type: ignore[attr-defined]
    context = {
        "error": error,
        "key_error": key_error,
        "new_key": new_key,
        "api_keys": api_keys,
        "key_organisations": organisations_for(request.user),
        "nav_section": "account",
    }
    return render(request, "web/account.html", context, status=status)


@login_required
@never_cache
@require_POST
def api_key_create(request: HttpRequest) -> HttpResponse:
    """Make a personal API key; the page answering the POST is the only one that ever shows it."""
    try:
        organisation = None
        if request.POST.get("organisation"):
            organisation = organisations_for(request.user).filter(slug=request.POST["organisation"]).first()
            if organisation is None:
                raise ApplicationError("Choose one of your organisations, or all of them.")
        days = request.POST.get("expires_in_days", "").strip()
        if days and not days.isdigit():
            raise ApplicationError("Expires after must be a whole number of days.")
        made = keys.api_key_create(
            actor=request.user,
            user=request.user,
            name=request.POST.get("name", ""),
            organisation=organisation,
            read_only=bool(request.POST.get("read_only")),
            expires_in_days=int(days) if days else None,
        )
    except ApplicationError as exc:
        return _account_page(request, key_error=exc.message, status=exc.status_code)
    return _account_page(request, new_key=made.raw)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = keys.api_keys_for(actor=request.user).filter(pk=key_id).first()
    if key is None:
        return _account_page(request, key_error="No such API key was found.", status=404)
    keys.api_key_revoke(actor=request.user, key=key)
    messages.success(request, f"The key {key.prefix}… ({key.name}) is revoked: it is refused from now on.")
    return redirect("web:account")


@login_required
@require_POST
def sign_out_everywhere(request: HttpRequest) -> HttpResponse:
    services.sessions_end_all(actor=request.user)
    logout(request)
    return redirect("web:login")


@never_cache
def password_reset(request: HttpRequest) -> HttpResponse:
    """Public: ask for a reset link by e-mail (when e-mail is configured; otherwise ask an admin)."""
    sent = False
    if request.method == "POST" and mail.email_enabled():
        services.password_reset_request(login=request.POST.get("login", ""), base_url=forge_url(request))
        sent = True  # the same answer whether or not the account exists
    return render(request, "web/password_reset.html", {"sent": sent, "email_enabled": mail.email_enabled()})


@never_cache
def password_reset_confirm(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """Public: the page a reset link opens; choose a new password."""
    user = services.password_reset_user(uidb64, token)
    if user is None:
        return render(request, "web/password_reset_confirm.html", {"invalid": True}, status=404)
    error, status = "", 200
    if request.method == "POST":
        try:
            new = request.POST.get("new_password", "")
            if new != request.POST.get("new_password2", ""):
                raise ApplicationError("The two passwords differ.")
            services.password_reset_complete(uidb64=uidb64, token=token, new_password=new)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            if request.user.is_authenticated:
                logout(request)
            messages.success(request, "Your password is changed. Sign in with it.")
            return redirect("web:login")
    return render(
        request, "web/password_reset_confirm.html", {"reset_user": user, "error": error}, status=status
    )
