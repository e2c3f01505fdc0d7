"""Writes of the inference app: usage recorded when a reply ends."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chat.models import Message
from inference.models import UsageDay

logger = logging.getLogger(__name__)


def usage_record(*, message_id: int, source: str = UsageDay.Source.CHAT) -> None:
    """Add a finished reply's tokens and GPU time to its owner's usage of the day it finished, under *source*
    (the chat page or the API)."""
    message = Message.objects.select_related("conversation").filter(pk=message_id).first()
    if message is None:
        return
    gpu_seconds = 0.0
    if message.started_at is not None:
        gpu_seconds = max(0.0, ((message.finished_at or timezone.now()) - message.started_at).total_seconds())
    day = timezone.localdate()
    with transaction.atomic():
        usage, _ = UsageDay.objects.select_for_update().get_or_create(
            user_id=message.conversation.owner_id, day=day, model_name=message.model_name, source=source
        )
        UsageDay.objects.filter(pk=usage.pk).update(
            generations=F("generations") + 1,
            prompt_tokens=F("prompt_tokens") + message.prompt_tokens,
            reasoning_tokens=F("reasoning_tokens") + message.reasoning_tokens,
            answer_tokens=F("answer_tokens") + message.answer_tokens,
            gpu_seconds=F("gpu_seconds") + gpu_seconds,
        )
    logger.info("reply %s: usage recorded (%.1f GPU-seconds)", message_id, gpu_seconds)
