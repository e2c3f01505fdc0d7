"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from chat.models import Profile
from chat.selectors import profile_get, reasoning_shown


def site(request: HttpRequest) -> dict[str, object]:
    """Expose the few settings that templates need, the signed-in user's profile (base.html's theme and
    notification switch) and whether they may see reasoning (search offers it only then); each is read
    only when a page uses it."""
    user = getattr(request, "user", None)

    def profile() -> Profile:
        return profile_get(user=user) if isinstance(user, User) else Profile()

    def shown() -> bool:
        return isinstance(user, User) and reasoning_shown(user=user)

    return {
        "GPTOSS_INVITATIONS": settings.GPTOSS_INVITATIONS,
        "GPTOSS_MAX_MESSAGE_CHARS": settings.GPTOSS_MAX_MESSAGE_CHARS,
        "profile": SimpleLazyObject(profile),
        "reasoning_shown": SimpleLazyObject(shown),
    }
