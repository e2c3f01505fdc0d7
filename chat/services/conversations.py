"""Conversations: create, rename, change their settings, delete, and their titles."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.contrib.auth.models import User

from chat.models import Conversation, ReasoningEffort
from inference.quotas import model_access_check
from inference.selectors import default_model_name, served_model_get

logger = logging.getLogger(__name__)

TITLE_CHARS = 60


def conversation_create(
    *,
    owner: User,
    title: str = "",
    model_name: str | None = None,
    reasoning_effort: str | None = None,
    enabled_tools: Sequence[str] = (),
    instructions: str = "",
) -> Conversation:
    """Create an empty conversation for *owner*, with their default model and its default effort."""
    model_name = model_name or default_model_name(user=owner)
    if reasoning_effort is None:
        row = served_model_get(name=model_name)
        reasoning_effort = row.default_reasoning_effort if row else ReasoningEffort.MEDIUM
    return Conversation.objects.create(
        owner=owner,
        title=title.strip()[:200],
        model_name=model_name,
        reasoning_effort=reasoning_effort,
        enabled_tools=sorted(set(enabled_tools)),
        instructions=instructions,
    )


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    """Give *conversation* a new title (blank means "New conversation")."""
    conversation.title = title.strip()[:200]
    conversation.save(update_fields=["title"])
    return conversation


def conversation_update_settings(
    *,
    conversation: Conversation,
    reasoning_effort: str,
    enabled_tools: Sequence[str],
    instructions: str,
    model_name: str | None = None,
) -> Conversation:
    """Change the settings that the next reply of *conversation* is generated with.

    Raises ChatError when *model_name* is not one the owner may use.
    """
    fields = ["reasoning_effort", "enabled_tools", "instructions"]
    if model_name and model_name != conversation.model_name:
        model_access_check(user=conversation.owner, model_name=model_name)
        conversation.model_name = model_name
        fields.append("model_name")
    conversation.reasoning_effort = reasoning_effort
    conversation.enabled_tools = sorted(set(enabled_tools))
    conversation.instructions = instructions
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete *conversation* and its messages; a reply still generating is cancelled by its worker."""
    logger.info("conversation %s deleted", conversation.pk)
    conversation.delete()


def title_from_text(text: str) -> str:
    """Return a title from the first line of the first message: no extra model call, ever."""
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first_line) <= TITLE_CHARS:
        return first_line
    cut = first_line[:TITLE_CHARS].rsplit(" ", 1)[0] or first_line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"
