"""Conversations: create, rename, change their settings, delete, and their titles."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat import events
from chat.errors import ChatError
from chat.models import MAX_PINNED, Conversation, Project, ReasoningEffort
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
    project: Project | None = None,
    announce: bool = True,
) -> Conversation:
    """Create an empty conversation for *owner*, in *project* if given (one of theirs).

    What is not given comes from the project's defaults, then the owner's profile defaults for new
    conversations, then the site's (its default model, that model's default effort, no tools): the narrower
    one wins where set (docs/architecture.md, "Projects"). A default the owner may no longer use is passed
    over: a model an admin took away gives way to the next one down, a tool to none.

    *announce* (the default) tells the owner's other tabs, whose sidebars show it; an import of many leaves it
    off and they see them on their next page.
    """
    if project is not None and project.owner_id != owner.pk:
        raise ChatError("That project is not yours.")
    profile = profile_get(user=owner)
    if model_name is None:
        for wanted in (project.model_name if project else "", profile.model_name):
            if wanted and model_allowed(user=owner, model_name=wanted):
                model_name = wanted
                break
    model_name = model_name or default_model_name(user=owner)
    if reasoning_effort is None:
        row = served_model_get(name=model_name)
        reasoning_effort = (
            (project.reasoning_effort if project else "")
            or profile.reasoning_effort
            or (row.default_reasoning_effort if row else ReasoningEffort.MEDIUM)
        )
    if enabled_tools is None:
        tools = project.enabled_tools if project and project.enabled_tools else profile.enabled_tools
        enabled_tools = usable_tools(user=owner, tools=tools)
    conversation = Conversation.objects.create(
        owner=owner,
        project=project,
        title=title.strip()[:200],
        model_name=model_name,
        reasoning_effort=reasoning_effort,
        enabled_tools=sorted(set(enabled_tools)),
        instructions=instructions,
    )
    if announce:
        events.sidebar_changed(owner.pk, conversation.pk, "created")
    return conversation


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
    events.title_changed(conversation.pk, conversation.display_title)
    events.sidebar_changed(conversation.owner_id, conversation.pk, "title")
    return conversation


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    """Pin *conversation* above the rest of the sidebar, or unpin it; pinning an archived one restores it.

    Raises ChatError when MAX_PINNED are pinned already. The owner's other tabs follow.
    """
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if pinned and locked.pinned_at is None:
            count = Conversation.objects.filter(
                owner_id=locked.owner_id, pinned_at__isnull=False, ephemeral=False
            ).count()
            if count >= MAX_PINNED:
                raise ChatError(f"You have {MAX_PINNED} pinned conversations already. Unpin one first.")
            locked.pinned_at, locked.archived_at = timezone.now(), None
        elif not pinned:
            locked.pinned_at = None
        locked.save(update_fields=["pinned_at", "archived_at"])
        events.sidebar_changed(locked.owner_id, locked.pk, "pinned" if pinned else "unpinned")
    conversation.pinned_at, conversation.archived_at = locked.pinned_at, locked.archived_at
    return conversation


def conversation_archive(*, conversation: Conversation, archived: bool) -> Conversation:
    """Archive *conversation* (out of the sidebar, unpinned; still found by search) or restore it."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if archived and locked.archived_at is None:
            locked.archived_at, locked.pinned_at = timezone.now(), None
        elif not archived:
            locked.archived_at = None
        locked.save(update_fields=["pinned_at", "archived_at"])
        events.sidebar_changed(locked.owner_id, locked.pk, "archived" if archived else "restored")
    conversation.pinned_at, conversation.archived_at = locked.pinned_at, locked.archived_at
    return conversation


def conversation_move(*, conversation: Conversation, project: Project | None) -> Conversation:
    """Move *conversation* into *project* (one of its owner's), or out of any project with None.

    Its own settings stay as they are; the project's instructions apply from its next reply.
    """
    if project is not None and project.owner_id != conversation.owner_id:
        raise ChatError("That project is not yours.")
    conversation.project = project
    conversation.save(update_fields=["project"])
    events.sidebar_changed(conversation.owner_id, conversation.pk, "moved")
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
    owner_id, pk = conversation.owner_id, conversation.pk
    conversation.delete()
    events.sidebar_changed(owner_id, pk, "deleted")


def title_from_text(text: str) -> str:
    """Return a title from the first line of the first message: no extra model call, ever."""
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first_line) <= TITLE_CHARS:
        return first_line
    cut = first_line[:TITLE_CHARS].rsplit(" ", 1)[0] or first_line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"
