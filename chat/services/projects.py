"""Projects: folders of a user's conversations with their own defaults and instructions."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import events
from chat.errors import ChatError
from chat.models import Conversation, Project
from inference.quotas import model_access_check

logger = logging.getLogger(__name__)

NAME_CHARS = 100


class ProjectNameTaken(ChatError):
    def __init__(self, name: str) -> None:
        super().__init__(f"You already have a project named “{name}”. Choose another name.")


def _clean_name(name: str) -> str:
    name = " ".join(name.split())[:NAME_CHARS]
    if not name:
        raise ChatError("Give the project a name.")
    return name


def project_create(
    *,
    owner: User,
    name: str,
    instructions: str = "",
    model_name: str = "",
    reasoning_effort: str = "",
    enabled_tools: Sequence[str] = (),
) -> Project:
    """Create a project of *owner*. Raise ChatError for a blank or taken name, or a model they may not use.

    *model_name*, *reasoning_effort* "" and no *enabled_tools* mean the owner's profile defaults.
    """
    name = _clean_name(name)
    if model_name:
        model_access_check(user=owner, model_name=model_name)
    try:
        with transaction.atomic():
            project = Project.objects.create(
                owner=owner,
                name=name,
                instructions=instructions,
                model_name=model_name,
                reasoning_effort=reasoning_effort,
                enabled_tools=sorted(set(enabled_tools)),
            )
    except IntegrityError:  # project_name_unique_per_owner: one name per owner, whatever its case
        raise ProjectNameTaken(name) from None
    logger.info("user %s created project %s", owner.pk, project.pk)
    events.sidebar_changed(owner.pk, None, "projects")
    return project


def project_update(
    *,
    project: Project,
    name: str,
    instructions: str,
    model_name: str,
    reasoning_effort: str,
    enabled_tools: Sequence[str],
) -> Project:
    """Change *project*'s name, instructions and defaults.

    The instructions apply from the next reply of each of its conversations; the defaults only to
    conversations created in it from now on (existing ones keep their own settings).
    """
    name = _clean_name(name)
    if model_name and model_name != project.model_name:
        model_access_check(user=project.owner, model_name=model_name)
    project.name, project.instructions = name, instructions
    project.model_name, project.reasoning_effort = model_name, reasoning_effort
    project.enabled_tools = sorted(set(enabled_tools))
    project.updated_at = timezone.now()
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError:
        raise ProjectNameTaken(name) from None
    events.sidebar_changed(project.owner_id, None, "projects")
    return project


def project_delete(*, project: Project, with_conversations: bool = False) -> int:
    """Delete *project*; its conversations stay, outside any project, unless *with_conversations* (the user
    ticked it on the confirmation page). Return how many conversations were deleted with it."""
    with transaction.atomic():
        deleted = 0
        if with_conversations:
            doomed = Conversation.objects.filter(project_id=project.pk, owner_id=project.owner_id)
            deleted = doomed.count()
            doomed.delete()
        project.delete()
    logger.info("project %s deleted (%d conversations with it)", project.pk, deleted)
    events.sidebar_changed(project.owner_id, None, "projects")
    return deleted
