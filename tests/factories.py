"""Test data, created through the same services the app uses."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from chat.models import Conversation, Message

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password(PASSWORD)


def make_conversation(owner: Any, **kwargs: Any) -> Conversation:
    from chat.services.conversations import conversation_create

    return conversation_create(owner=owner, **kwargs)


def make_exchange(
    conversation: Conversation, question: str, answer: str, *, reasoning: str = ""
) -> tuple[Message, Message]:
    """Store a finished turn: the user's *question* and the assistant's `done` *answer*."""
    asked = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
    answered = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.DONE,
        reply_to=asked,
        content=answer,
        reasoning=reasoning,
    )
    return asked, answered
