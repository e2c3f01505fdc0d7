"""Permission checks before a reply is queued: may this user use this model, and generate more today?"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from chat.services import ChatError
from inference import selectors


class ModelNotAllowed(ChatError):
    def __init__(self, model_name: str) -> None:
        super().__init__(
            f"The model {model_name!r} is not available to you. Choose another model in this "
            "conversation's settings, or ask an admin for access."
        )


class QuotaExceeded(ChatError):
    pass


def quota_resets_at() -> datetime:
    """Return the next local midnight (TIME_ZONE), when daily quotas start again."""
    tomorrow = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime.combine(tomorrow, time.min))


def model_access_check(*, user: User, model_name: str) -> None:
    """Raise ModelNotAllowed unless *user* may use *model_name* (enabled, and in one of its groups)."""
    if not selectors.model_allowed(user=user, model_name=model_name):
        raise ModelNotAllowed(model_name)


def generation_allowed_check(*, user: User, model_name: str) -> None:
    """Raise ChatError with what to do when *user* may not queue another reply with *model_name*."""
    model_access_check(user=user, model_name=model_name)
    limit = selectors.limits_get(user=user).daily_tokens
    if limit is None:
        return
    used = selectors.tokens_used_today(user=user)
    if used >= limit:
        resets = quota_resets_at()
        left = resets - timezone.now()
        hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
        raise QuotaExceeded(
            f"You have used your {limit:,} tokens for today ({used:,} generated). Your quota resets at "
            f"{timezone.localtime(resets):%H:%M %Z} (in {hours} h {minutes} min); an admin can raise it."
        )


def reply_model_refusal(*, owner: User, model_name: str) -> str:
    """Return why the GPU worker must not generate with *model_name* for *owner* ("" when it may).

    Checked again in the task: an admin may have taken the model away after the reply was queued.
    """
    try:
        model_access_check(user=owner, model_name=model_name)
    except ModelNotAllowed as refused:
        return str(refused)
    return ""
