"""A user's profile: custom instructions, defaults for new conversations, colour scheme, notifications."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat.models import Profile
from inference.quotas import model_access_check

logger = logging.getLogger(__name__)


def profile_update(
    *,
    user: User,
    about_me: str,
    answer_style: str,
    model_name: str,
    reasoning_effort: str,
    enabled_tools: Sequence[str],
    theme: str,
    notifications: bool,
) -> Profile:
    """Save *user*'s profile (written the first time they save it).

    *model_name* and *reasoning_effort* "" mean the site's default model and that model's default effort.
    Raises ChatError when *model_name* is not one the user may use.
    """
    if model_name:
        model_access_check(user=user, model_name=model_name)
    with transaction.atomic():
        profile, _ = Profile.objects.update_or_create(
            user_id=user.pk,
            defaults={
                "about_me": about_me,
                "answer_style": answer_style,
                "model_name": model_name,
                "reasoning_effort": reasoning_effort,
                "enabled_tools": sorted(set(enabled_tools)),
                "theme": theme,
                "notifications": notifications,
                "updated_at": timezone.now(),
            },
        )
    logger.info("user %s saved their profile", user.pk)
    return profile


def profile_notifications_set(*, user: User, on: bool) -> Profile:
    """Switch *user*'s notifications of finished replies on or off (the user menu's switch)."""
    profile, _ = Profile.objects.update_or_create(
        user_id=user.pk, defaults={"notifications": on, "updated_at": timezone.now()}
    )
    return profile
