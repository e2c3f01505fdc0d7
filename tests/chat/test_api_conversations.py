"""A stored Responses chain is one of its user's conversations in the chat page, marked as from the API."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from chat.models import Conversation, Message
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _api_conversation(owner: Any) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner, model_name="tiny", from_api=True, title="From a script"
    )
    question = Message.objects.create(conversation=conversation, role="user", content="What is the weather?")
    Message.objects.create(conversation=conversation, role="assistant", reply_to=question, content="Sunny.")
    return conversation


def test_the_page_lists_and_shows_it_marked_as_from_the_api(alice: Any, alice_client: Client) -> None:
    conversation = _api_conversation(alice)
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert page.count('title="Made through the API') == 2  # in the sidebar and in the top bar
    assert "What is the weather?" in page and "Sunny." in page
    ordinary = Conversation.objects.create(owner=alice, model_name="tiny", title="Typed here")
    assert (
        'title="Made through the API'
        not in alice_client.get(f"/c/{ordinary.pk}/").content.decode().split("<main")[1]
    )


def test_the_owner_deletes_it_and_a_stranger_gets_404(alice: Any, alice_client: Client) -> None:
    conversation = _api_conversation(alice)
    stranger = Client()
    stranger.force_login(UserFactory(username="mallory"))
    assert stranger.get(f"/c/{conversation.pk}/").status_code == 404
    assert stranger.post(f"/c/{conversation.pk}/delete/").status_code == 404
    alice_client.post(f"/c/{conversation.pk}/delete/")
    assert not Conversation.objects.exists()
