"""Accounts: writes about users themselves rather than their conversations (signing them out everywhere)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.contrib.sessions.models import Session
from django.utils import timezone

logger = logging.getLogger(__name__)


def user_sessions_end(*, user_ids: Sequence[int]) -> int:
    """Sign the users *user_ids* out everywhere: delete their sessions; return how many there were.

    Sessions live in the database (Django's default engine) and name their user only inside the signed
    payload, so each live one is decoded; an intranet install has a few thousand at most.
    """
    wanted = {str(user_id) for user_id in user_ids}
    ended = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if str(session.get_decoded().get("_auth_user_id", "")) in wanted
    ]
    Session.objects.filter(pk__in=ended).delete()
    logger.info("ended %d sessions of users %s", len(ended), sorted(user_ids))
    return len(ended)
