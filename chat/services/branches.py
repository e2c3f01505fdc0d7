"""Branches: which version of the conversation is on screen.

A conversation's messages form a tree (`Message.parent`): an edit adds a sibling of a question, a regenerate
a sibling of an answer, and every version is kept. The branch on screen is the path from the root to
`Conversation.current_leaf`; its rows carry `Message.on_branch`. Both change only here, together, in the
caller's transaction: the page, the exports, search and the next reply's prompt read the same branch.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from chat import events, selectors
from chat.errors import ReplyInFlight, StaleEdit
from chat.models import Conversation, Message

logger = logging.getLogger(__name__)


def branch_move(*, conversation: Conversation, leaf: Message, touch: bool = False) -> None:
    """Make the path to *leaf* the branch on screen of *conversation* (locked by the caller); with *touch*, it
    is also the conversation's latest activity (a new reply), saved in the same write.

    Only the rows that leave or join the branch are written: those below the fork between the old branch
    and the new one.
    """
    question = leaf.parent
    if question is not None and question.parent_id == conversation.current_leaf_id and question.on_branch:
        # A send: the branch grows by its question and reply, both written on it (no path read: this is on
        # the way to the first token).
        _leaf_save(conversation, leaf, touch)
        return
    old = set(selectors.branch_path_ids(leaf_id=conversation.current_leaf_id))
    new = set(selectors.branch_path_ids(leaf_id=leaf.pk))
    if old - new:
        Message.objects.filter(pk__in=old - new).update(on_branch=False)
    Message.objects.filter(pk__in=new - old, on_branch=False).update(on_branch=True)
    _leaf_save(conversation, leaf, touch)


def _leaf_save(conversation: Conversation, leaf: Message, touch: bool) -> None:
    conversation.current_leaf = leaf
    if touch:
        conversation.updated_at = timezone.now()
    conversation.save(update_fields=["current_leaf", "updated_at"] if touch else ["current_leaf"])


def branch_switch(*, conversation: Conversation, message_id: int) -> Message:
    """Show the branch through *message_id* (a sibling of a message on screen, i.e. another version of it):
    the newest leaf under it, following the most recently created child at each step. Return that leaf.

    Refused while a reply is in flight (its prompt is the branch it was asked on); a message that is not in
    this conversation gets the same StaleEdit as one that does not exist. Every socket of the conversation
    is sent the new thread.
    """
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        target = Message.objects.filter(pk=message_id, conversation_id=locked.pk).first()
        if target is None:
            raise StaleEdit()
        if selectors.message_in_flight(conversation=locked):
            raise ReplyInFlight()
        leaf = Message.objects.get(pk=selectors.branch_newest_leaf_id(message_id=target.pk))
        if leaf.pk != locked.current_leaf_id:
            branch_move(conversation=locked, leaf=leaf)
            events.branch_changed(locked.pk)
            logger.info("conversation %s shows the branch of message %s", locked.pk, leaf.pk)
    conversation.current_leaf_id = leaf.pk
    return leaf
