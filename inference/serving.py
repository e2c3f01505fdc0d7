"""Whether a GPU worker serves each model right now, for the replies queued for it.

The reaper calls `unserved_check` every round. Per model with queued replies it reads the live heartbeats:
while no worker is ready for the model, its replies are told so (they keep their place in line); once one is,
the note goes away; after GPTOSS_UNSERVED_TIMEOUT_S without one they fail, with Retry. Replies queued for a
model this site no longer serves fail at once, without Retry (`withdrawn_check`, also called from admin).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime

from django.conf import settings

from chat.models import Message
from chat.services.replies import replies_fail_queued, reply_waiting_changed
from inference.selectors import enabled_model_names, serving_states, waiting_note
from inference.status import redis_client

logger = logging.getLogger(__name__)

# What this process last told each queued reply (message id → note), so a note is sent when it changes.
_told: dict[int, str] = {}


def _since_key() -> str:
    # model → when the reaper first saw no worker for it: kept in Redis so a reaper restart keeps the clock.
    return f"{settings.GPTOSS_REDIS_PREFIX}:unserved-since"


def _queued() -> dict[str, list[tuple[int, int, datetime]]]:
    """Return, per model, its queued replies as (message id, conversation id, created at), in queue order."""
    replies: dict[str, list[tuple[int, int, datetime]]] = defaultdict(list)
    queued = Message.objects.filter(status=Message.Status.QUEUED, role=Message.Role.ASSISTANT)
    for pk, conversation_id, model_name, created_at in queued.order_by("created_at", "id").values_list(
        "pk", "conversation_id", "model_name", "created_at"
    ):
        replies[model_name].append((pk, conversation_id, created_at))
    return replies


def withdrawn_check() -> int:
    """Fail at once, without Retry, the replies queued for a model not served here; return how many."""
    served = set(enabled_model_names())
    failed = 0
    for model_name, replies in _queued().items():
        if model_name not in served:
            failed += replies_fail_queued(
                message_ids=[pk for pk, _, _ in replies], error=_withdrawn(model_name), retryable=False
            )
    return failed


def _withdrawn(model_name: str) -> str:
    return (
        f"The model {model_name} is no longer served on this site (an admin disabled or removed it, or the "
        "server now runs another model), so this reply was not generated. Choose another model in this "
        "conversation's settings, then send your message again."
    )


def _gave_up(model_name: str) -> str:
    return (
        f"No GPU worker served {model_name} for {settings.GPTOSS_UNSERVED_TIMEOUT_S} s, so this reply was "
        "not generated. Press Retry once a worker runs (an admin sees them at /ops/workers/)."
    )


def unserved_check() -> int:
    """Tell queued replies whether a worker serves their model; fail those that waited too long for one.

    Return how many replies failed.
    """
    failed = withdrawn_check()
    states = serving_states()
    client = redis_client()
    now = time.time()
    still_queued: set[int] = set()
    updates: list[tuple[int, int, int, str]] = []
    for model_name, replies in _queued().items():
        if states.get(model_name) not in ("ready", "loading"):  # none, or only workers waiting for a database
            client.hsetnx(_since_key(), model_name, now)
            since = float(client.hget(_since_key(), model_name) or now)
            expired = [
                pk
                for pk, _, created_at in replies
                if now - max(since, created_at.timestamp()) >= settings.GPTOSS_UNSERVED_TIMEOUT_S
            ]
            if expired:
                failed += replies_fail_queued(message_ids=expired, error=_gave_up(model_name), retryable=True)
                replies = [reply for reply in replies if reply[0] not in expired]
        else:
            client.hdel(_since_key(), model_name)
        note = waiting_note(model_name=model_name, states=states)
        for position, (pk, conversation_id, _) in enumerate(replies, start=1):
            still_queued.add(pk)
            if _told.get(pk, "") != note:
                updates.append((conversation_id, pk, position, note))
                _told[pk] = note
    for pk in set(_told) - still_queued:
        del _told[pk]
    if updates:
        logger.info("told %d queued replies whether a GPU worker serves their model", len(updates))
        reply_waiting_changed(updates)
    return failed
