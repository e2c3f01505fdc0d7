"""Shares: a read-only snapshot of a conversation for every signed-in user with its link; revoke; continue.

A share holds the conversation as it was when shared (its finished messages, in this app's JSON); nothing
the owner does later changes it. A reader who continues it gets a copy of their own; the owner's
conversation is never touched by anyone else.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.utils import timezone

from chat import selectors
from chat.errors import ChatError
from chat.interchange import gptoss
from chat.models import Conversation, Share
from chat.services.transfers import records_store
from chat.transfer import conversation_record, share_record

logger = logging.getLogger(__name__)


def share_create(*, conversation: Conversation) -> Share:
    """Snapshot *conversation* as it is now into a new share of its owner's; return it.

    A reply still being written is left out. Raises ChatError when there is nothing finished to share.
    """
    messages = [m for m in selectors.message_list(conversation=conversation) if not m.in_flight]
    if not messages:
        raise ChatError("There is nothing to share yet: send a message and wait for its reply.")
    record = conversation_record(conversation, messages=messages)
    share = Share.objects.create(
        owner_id=conversation.owner_id,
        conversation=conversation,
        title=conversation.title,
        snapshot=gptoss.document(record, exported_at=timezone.now()),
        message_count=len(messages),
    )
    logger.info("conversation %s shared as share %s", conversation.pk, share.pk)
    return share


def share_revoke(*, share: Share) -> bool:
    """Revoke *share*: its link answers 404 from now on, its snapshot is deleted. False if it already was."""
    now = timezone.now()
    revoked = (
        Share.objects.filter(pk=share.pk, revoked_at__isnull=True).update(revoked_at=now, snapshot={}) == 1
    )
    if revoked:
        share.revoked_at, share.snapshot = now, {}
        logger.info("share %s revoked", share.pk)
    return revoked


def share_continue(*, share: Share, reader: User) -> Conversation:
    """Copy the snapshot of *share* into a new conversation of *reader*'s, at the top of their list."""
    record = share_record(share)
    record.created_at = record.updated_at = timezone.now()
    [conversation] = records_store(owner=reader, records=[record])
    logger.info("share %s continued by user %s as conversation %s", share.pk, reader.pk, conversation.pk)
    return conversation
