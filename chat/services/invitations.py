"""Invitations: an invited person becomes a user."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from chat.errors import ChatError
from chat.models import Invitation


def invitation_accept(*, invitation: Invitation, username: str, password: str) -> User:
    """Create the invited user, add them to the invitation's groups and use the invitation up."""
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not locked.usable:
            raise ChatError("This invitation has expired or was already used. Ask an admin for a new one.")
        user = get_user_model().objects.create_user(username=username, email=locked.email, password=password)
        groups: list[Group] = list(locked.groups.all())
        user.groups.add(*groups)
        locked.used_by = user
        locked.used_at = timezone.now()
        locked.save(update_fields=["used_by", "used_at"])
    return user
