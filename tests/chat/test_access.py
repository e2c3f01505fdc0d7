"""Access checks: fetch and permission in one call."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404

from chat.access import access_conversation, access_message
from chat.selectors import conversation_list, message_list, replies_in_flight_count
from chat.services.messages import message_send
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db


def test_the_owner_gets_the_conversation(alice: object) -> None:
    conversation = make_conversation(alice)
    assert access_conversation(alice, conversation.pk) == conversation  # type: ignore[arg-type]
    assert access_conversation(alice, str(conversation.pk)) == conversation  # type: ignore[arg-type]


@pytest.mark.parametrize("who", ["bob", "anonymous"])
def test_anyone_else_gets_404(alice: object, bob: object, who: str) -> None:
    conversation = make_conversation(alice)
    _, reply = message_send(conversation=conversation, text="hi")
    user = bob if who == "bob" else AnonymousUser()
    with pytest.raises(Http404):
        access_conversation(user, conversation.pk)  # type: ignore[arg-type]
    with pytest.raises(Http404):
        access_message(user, reply.pk)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_id", ["abc", None, "", "1; drop table"])
def test_malformed_ids_are_404(alice: object, bad_id: object) -> None:
    with pytest.raises(Http404):
        access_conversation(alice, bad_id)  # type: ignore[arg-type]


def test_selectors_list_only_the_users_own_rows_newest_first(alice: object, bob: object) -> None:
    older = make_conversation(alice, title="older")
    newer = make_conversation(alice, title="newer")
    make_conversation(bob, title="bob's")
    message_send(conversation=older, text="bump")  # activity moves it to the top
    assert [c.title for c in conversation_list(user=alice)] == ["older", "newer"]  # type: ignore[arg-type]
    assert [m.role for m in message_list(conversation=older)] == ["user", "assistant"]
    assert replies_in_flight_count(user=alice) == 1  # type: ignore[arg-type]
    assert replies_in_flight_count(user=bob) == 0  # type: ignore[arg-type]
    assert newer.messages.count() == 0
