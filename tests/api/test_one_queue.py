"""The API is a third face of the chat page's services: one queue, one engine batch, one set of limits."""

from __future__ import annotations

import time

import openai
import pytest

from chat.models import Message
from chat.services.api_keys import api_key_create
from chat.services.conversations import conversation_create
from chat.services.messages import message_send
from chat.services.replies import reply_cancel
from gptoss_web.devtools.stack import Stack
from inference.models import Quota, UsageDay
from inference.status import workers_list
from tests.api.test_chat_completions import client_for
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ENDLESS = "Tell an endless story"


def _until(condition: object, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_chat_reply_and_an_api_stream_share_the_engine_and_the_limits(live: Stack) -> None:
    alice = UserFactory(username="alice")
    _, key = api_key_create(owner=alice, name="script")
    client = client_for(live, key)
    conversation = conversation_create(owner=alice)
    _, chat_reply = message_send(conversation=conversation, text=ENDLESS)
    stream = client.responses.create(model="tiny", input=ENDLESS, stream=True, store=False)
    received = ""
    for event in stream:
        if event.type == "response.output_text.delta":
            received += event.delta
        if len(received) > 20:
            break
    # Both generate in the same engine steps: the worker's heartbeat counts two busy slots.
    _until(lambda: any(w.slots_busy == 2 for w in workers_list()))
    assert Message.objects.get(pk=chat_reply.pk).status == Message.Status.STREAMING
    stream.close()
    reply_cancel(conversation=conversation)
    _until(lambda: not Message.objects.filter(status__in=Message.IN_FLIGHT).exists())
    # One day's usage per source (recorded by the worker as each stopped reply is stored), under one quota.
    _until(lambda: UsageDay.objects.filter(user=alice).count() == 2)
    sources = set(UsageDay.objects.filter(user=alice).values_list("source", flat=True))
    assert sources == {UsageDay.Source.CHAT, UsageDay.Source.API}
    used = sum(day.reasoning_tokens + day.answer_tokens for day in UsageDay.objects.filter(user=alice))
    Quota.objects.create(user=alice, daily_tokens=used)
    with pytest.raises(openai.RateLimitError, match="quota"):
        client.responses.create(model="tiny", input="Hi")


def test_the_in_flight_limit_counts_chat_replies_and_api_calls_together(live: Stack) -> None:
    alice = UserFactory(username="alice")
    Quota.objects.create(user=alice, max_in_flight=1)
    _, key = api_key_create(owner=alice, name="script")
    conversation = conversation_create(owner=alice)
    message_send(conversation=conversation, text=ENDLESS)
    with pytest.raises(openai.RateLimitError) as limited:
        client_for(live, key).chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}]
        )
    assert limited.value.code == "too_many_in_flight"
    reply_cancel(conversation=conversation)
    _until(lambda: not Message.objects.filter(status__in=Message.IN_FLIGHT).exists())
