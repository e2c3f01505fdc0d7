"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from chat.models import Profile
from chat.selectors import profile_get


def site(request: HttpRequest) -> dict[str, object]:
    """Expose the few settings that templates need, and the signed-in user's profile (read only when a page
    uses it: base.html's theme and notification switch)."""

    def profile() -> Profile:
        user = getattr(request, "user", None)
        return profile_get(user=user) if isinstance(user, User) else Profile()

    return {
        "GPTOSS_INVITATIONS": settings.GPTOSS_INVITATIONS,
        "GPTOSS_MAX_MESSAGE_CHARS": settings.GPTOSS_MAX_MESSAGE_CHARS,
        "profile": SimpleLazyObject(profile),
    }
