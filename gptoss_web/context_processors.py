"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    """Expose the few settings that templates need."""
    return {
        "GPTOSS_INVITATIONS": settings.GPTOSS_INVITATIONS,
        "GPTOSS_MAX_MESSAGE_CHARS": settings.GPTOSS_MAX_MESSAGE_CHARS,
    }
