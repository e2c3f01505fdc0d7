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
    """Store a finished turn at the end of the branch on screen: the user's *question* and the assistant's
    `done` *answer*, which becomes the conversation's current leaf."""
    leaf = Conversation.objects.filter(pk=conversation.pk).values_list("current_leaf", flat=True).first()
    asked = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=question, parent_id=leaf
    )
    answered = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.DONE,
        reply_to=asked,
        parent=asked,
        content=answer,
        reasoning=reasoning,
    )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=answered)
    conversation.current_leaf = answered
    return asked, answered
