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


# An answer needs at least this many tokens (its channel header alone takes a few); with fewer left, a send is
# refused.
MIN_ANSWER_TOKENS = 16


def quota_resets_at() -> datetime:
    """Return the next local midnight (TIME_ZONE), when daily quotas start again."""
    tomorrow = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime.combine(tomorrow, time.min))


def model_access_check(*, user: User, model_name: str) -> None:
    """Raise ModelNotAllowed unless *user* may use *model_name* (enabled, and in one of its groups)."""
    if not selectors.model_allowed(user=user, model_name=model_name):
        raise ModelNotAllowed(model_name)


def generation_allowed_check(*, user: User, model_name: str) -> int:
    """Return the tokens the next reply of *user* with *model_name* may generate, which it holds against the
    daily quota until its real count is recorded; raise ChatError with what to do when it may not be queued.

    A reply gets the model's whole answer budget, or what is left of the quota once the replies in flight
    hold theirs. The caller holds the owner's send lock, so no other send counts meanwhile.
    """
    model_access_check(user=user, model_name=model_name)
    budget = selectors.answer_tokens_get(model_name=model_name)
    limit = selectors.limits_get(user=user).daily_tokens
    if limit is None:
        return budget
    tokens = selectors.tokens_today(user=user)
    left = limit - tokens.used - tokens.reserved
    if left >= min(MIN_ANSWER_TOKENS, budget):
        return min(budget, left)
    details = [f"{tokens.used:,} generated"]
    if tokens.reserved:
        details.append(f"{tokens.reserved:,} held by answers still being generated until they finish")
    if left > 0:
        details.append(f"{left:,} left, too few for an answer")
    resets = quota_resets_at()
    hours, minutes = divmod(int((resets - timezone.now()).total_seconds()) // 60, 60)
    raise QuotaExceeded(
        f"You have used your {limit:,} tokens for today ({'; '.join(details)}). Your quota resets at "
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
