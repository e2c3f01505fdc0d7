"""A user's own settings: API keys, profile, notifications; and accepting an invitation."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from chat import selectors
from chat.access import access_api_key
from chat.errors import ChatError
from chat.forms import (
    ApiKeyCreateForm,
    InvitationSignupForm,
    ProfileForm,
)
from chat.models import Invitation
from chat.services import (
    api_keys,
    invitations,
    profiles,
)
from chat.views.base import request_user, sidebar_context


def _render_api_keys(
    request: HttpRequest, *, form: ApiKeyCreateForm | None = None, created: str = "", status: int = 200
) -> HttpResponse:
    user = request_user(request)
    context = {
        **sidebar_context(request),
        "api_keys": selectors.api_key_list(user=user),
        "api_allowed": selectors.api_allowed(user=user),
        "form": form or ApiKeyCreateForm(),
        "created_key": created,
    }
    return render(request, "chat/api_keys.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def api_keys_page(request: HttpRequest) -> HttpResponse:
    """List the user's API keys; on POST, create one and show it, this once, in the answer itself.

    The new key goes into this response only (never the session, never a redirect's next page, and
    `never_cache`): reloading the list no longer shows it.
    """
    if request.method != "POST":
        return _render_api_keys(request)
    if not selectors.api_allowed(user=request_user(request)):
        return _render_api_keys(request, status=403)
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return _render_api_keys(request, form=form, status=400)
    _key, plaintext = api_keys.api_key_create(
        owner=request_user(request), name=form.cleaned_data["name"], expires_at=form.expires_at()
    )
    return _render_api_keys(request, created=plaintext, status=201)


@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = access_api_key(request.user, key_id)
    if api_keys.api_key_revoke(key=key, by=request_user(request)):
        flash.success(
            request, f"Revoked “{key.name}” ({key.prefix}…): programs using it are refused from now on."
        )
    return redirect("chat:api_keys")


@require_http_methods(["GET", "POST"])
def profile_page(request: HttpRequest) -> HttpResponse:
    """Show the user's profile; on POST, save it (the theme applies from the very next page)."""
    user = request_user(request)
    form = ProfileForm.for_user(user, selectors.profile_get(user=user), data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            profiles.profile_update(user=user, **form.cleaned_data)
        except ChatError as error:
            form.add_error("model_name", str(error))
        else:
            flash.success(request, "Profile saved. New conversations start with these settings.")
            return redirect("chat:profile")
    context = {**sidebar_context(request), "form": form}
    return render(request, "chat/profile.html", context, status=400 if form.errors else 200)


@require_POST
def profile_notifications(request: HttpRequest) -> HttpResponse:
    """Switch notifications on or off: the user menu's switch posts here (static/js/attention.js)."""
    on = request.POST.get("notifications") == "on"
    profiles.profile_notifications_set(user=request_user(request), on=on)
    return JsonResponse({"notifications": on})


@login_not_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Let an invited person pick a username and password (only when invitations are enabled)."""
    if not settings.GPTOSS_INVITATIONS:
        raise Http404("Invitations are disabled")
    invitation = get_object_or_404(Invitation, token=token)
    if not invitation.usable:
        return render(request, "chat/invitation.html", {"expired": True}, status=410)
    form = InvitationSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = invitations.invitation_accept(
                invitation=invitation,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except ChatError as error:
            form.add_error(None, str(error))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat:index")
    return render(request, "chat/invitation.html", {"form": form}, status=400 if form.errors else 200)
