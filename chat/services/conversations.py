"""Conversations: create, rename, change their settings, delete, and their titles."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.contrib.auth.models import User

from chat.models import Conversation, ReasoningEffort
from chat.selectors import profile_get
from inference.quotas import model_access_check
from inference.selectors import default_model_name, model_allowed, served_model_get
from inference.tools.selectors import tools_available

logger = logging.getLogger(__name__)

TITLE_CHARS = 60


def conversation_create(
    *,
    owner: User,
    title: str = "",
    model_name: str | None = None,
    reasoning_effort: str | None = None,
    enabled_tools: Sequence[str] | None = None,
    instructions: str = "",
) -> Conversation:
    """Create an empty conversation for *owner*; what is not given comes from their profile's defaults for
    new conversations, else the site's (its default model, that model's default effort, no tools).

    A default the owner may no longer use is passed over: a model an admin took away gives way to the site's
    default, a tool to none.
    """
    profile = profile_get(user=owner)
    if model_name is None and profile.model_name and model_allowed(user=owner, model_name=profile.model_name):
        model_name = profile.model_name
    model_name = model_name or default_model_name(user=owner)
    if reasoning_effort is None:
        row = served_model_get(name=model_name)
        reasoning_effort = profile.reasoning_effort or (
            row.default_reasoning_effort if row else ReasoningEffort.MEDIUM
        )
    if enabled_tools is None:
        enabled_tools = usable_tools(user=owner, tools=profile.enabled_tools)
    return Conversation.objects.create(
        owner=owner,
        title=title.strip()[:200],
        model_name=model_name,
        reasoning_effort=reasoning_effort,
        enabled_tools=sorted(set(enabled_tools)),
        instructions=instructions,
    )


def usable_tools(*, user: User, tools: Sequence[str]) -> list[str]:
    """Return those of *tools* that *user* may switch on now ("python", "browser", "functions.<name>")."""
    if not tools:
        return []
    available = tools_available(user=user)
    usable = {f"functions.{f.name}" for f in available.functions}
    usable |= {name for name, on in (("python", available.python), ("browser", available.browser)) if on}
    return [tool for tool in tools if tool in usable]


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
    temperature: float | None = None,
    top_p: float | None = None,
    max_answer_tokens: int | None = None,
) -> Conversation:
    """Change the settings that the next reply of *conversation* is generated with.

    *temperature*, *top_p* and *max_answer_tokens* None mean the defaults (chat.forms.SettingsForm checks
    their ranges; the database refuses any other value). Raises ChatError when *model_name* is not one the
    owner may use.
    """
    fields = ["reasoning_effort", "enabled_tools", "instructions"]
    fields += ["temperature", "top_p", "max_answer_tokens"]
    if model_name and model_name != conversation.model_name:
        model_access_check(user=conversation.owner, model_name=model_name)
        conversation.model_name = model_name
        fields.append("model_name")
    conversation.reasoning_effort = reasoning_effort
    conversation.enabled_tools = sorted(set(enabled_tools))
    conversation.instructions = instructions
    conversation.temperature = temperature
    conversation.top_p = top_p
    conversation.max_answer_tokens = max_answer_tokens
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
