"""Routing a conversation's next turn to the worker that keeps its cache (docs/architecture.md, "Routing")."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from django.conf import settings

from chat.models import Message
from chat.services.messages import message_send
from chat.services.replies import reply_start
from inference.dispatch import tasks_waiting
from inference.runtime.catalog import queue_for_model
from inference.status import (
    HEARTBEAT_TTL_S,
    ROUTE_FRESH_S,
    RouteOffer,
    conversation_cache_key,
    offer_write,
    offers_list,
    redis_client,
    route_choose,
    worker_queue,
)
from tests.factories import make_conversation

NOW = 1_000_000.0
KEY = conversation_cache_key(7)


def _offer(name: str, *, free: int = 2, cached: tuple[str, ...] = (KEY,), age: float = 0.0, waiting: int = 0):
    return RouteOffer(
        name=name, queue=f"gpu.tiny.w.{name}", free=free, cached=list(cached), updated_at=NOW - age,
        waiting=waiting,
    )  # fmt: skip


def _choose(*offers: RouteOffer, shared_waiting: int = 0, key: str = KEY) -> str | None:
    chosen = route_choose(list(offers), cache_key=key, shared_waiting=shared_waiting, now=NOW)
    return chosen.name if chosen else None


def test_a_next_turn_goes_to_the_worker_that_keeps_its_cache_when_it_has_a_free_slot() -> None:
    assert _choose(_offer("a", cached=()), _offer("b"), _offer("c", cached=("conversation:8",))) == "b"


def test_a_holder_without_a_free_slot_leaves_the_turn_to_the_shared_queue() -> None:
    assert _choose(_offer("b", free=0), _offer("a", cached=())) is None


def test_tasks_already_in_the_holders_own_queue_take_its_free_slots() -> None:
    assert _choose(_offer("b", free=2, waiting=2)) is None
    assert _choose(_offer("b", free=2, waiting=1)) == "b"


def test_nothing_is_routed_while_replies_wait_in_the_shared_queue() -> None:
    """An older reply waiting in line is never passed over by a routed one."""
    assert _choose(_offer("b"), shared_waiting=1) is None


def test_a_stale_offer_is_not_routed_to() -> None:
    """A worker that missed two beats may be dead: its cache is not worth a wait."""
    assert _choose(_offer("b", age=ROUTE_FRESH_S + 0.5)) is None
    assert _choose(_offer("b", age=ROUTE_FRESH_S - 0.5)) == "b"


def test_of_two_holders_the_one_with_more_free_slots_wins() -> None:
    assert _choose(_offer("a", free=1), _offer("b", free=3, waiting=1)) == "b"


def test_a_reply_without_a_cache_key_goes_to_the_shared_queue() -> None:
    assert _choose(_offer("b"), key="") is None


# --- With Redis and PostgreSQL -----------------------------------------------------------------------------


def _tasks(queue: str) -> list[tuple[int, dict[str, object]]]:
    key = f"{settings.GPTOSS_REDIS_PREFIX}:celery:{queue}"
    found = []
    for raw in redis_client().lrange(key, 0, -1):
        envelope = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        found.append((args[0], kwargs))
    return found


@pytest.fixture(autouse=True)
def _empty_queues() -> Iterator[None]:
    """Start and end each test with no task queued and no offer stored (the run's Redis keys outlive it)."""

    def empty() -> None:
        client = redis_client()
        prefix = settings.GPTOSS_REDIS_PREFIX
        for pattern in (f"{prefix}:celery:gpu.*", f"{prefix}:routes:*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)

    empty()
    yield
    empty()


@pytest.fixture
def shared(alice: object) -> str:
    return queue_for_model(make_conversation(alice).model_name)


def _offer_for(model_name: str, name: str, conversation_id: int, *, free: int = 2) -> RouteOffer:
    offer = RouteOffer(
        name=name,
        queue=worker_queue(queue_for_model(model_name), name),
        free=free,
        cached=[conversation_cache_key(conversation_id)],
    )
    offer_write(model_name, offer)
    return offer


@pytest.mark.django_db(transaction=True)
def test_a_send_is_routed_to_the_holders_own_queue_and_claims_its_own_reply(
    alice: object, shared: str
) -> None:
    conversation = make_conversation(alice)
    holder = _offer_for(conversation.model_name, "gpu-b:2", conversation.pk)
    _offer_for(conversation.model_name, "gpu-a:1", conversation.pk + 1000)
    _, reply = message_send(conversation=conversation, text="Hello")
    assert _tasks(holder.queue) == [(reply.pk, {"routed": True})]
    assert _tasks(shared) == []
    assert tasks_waiting(model_name=conversation.model_name) == 1
    started = reply_start(message_id=reply.pk, task_id="t", worker=holder.name, routed=True)
    assert started is not None and started.pk == reply.pk


@pytest.mark.django_db(transaction=True)
def test_a_send_goes_to_the_shared_queue_when_the_holder_is_full_or_routing_is_off(
    alice: object, shared: str, settings: object
) -> None:
    busy, other = make_conversation(alice), make_conversation(alice)
    _offer_for(busy.model_name, "gpu-b:2", busy.pk, free=0)
    _, reply = message_send(conversation=busy, text="Hello")
    settings.GPTOSS_ROUTING = False  # type: ignore[attr-defined]
    _offer_for(other.model_name, "gpu-c:3", other.pk)
    _, unrouted = message_send(conversation=other, text="Hello")
    assert sorted(task for task, _ in _tasks(shared)) == [reply.pk, unrouted.pk]


@pytest.mark.django_db(transaction=True)
def test_a_routed_task_whose_reply_was_taken_claims_the_oldest_queued_one(alice: object, bob: object) -> None:
    oldest = message_send(conversation=make_conversation(alice), text="Hello")[1]
    later = message_send(conversation=make_conversation(bob), text="Hello")[1]
    first = reply_start(message_id=later.pk, task_id="t1", worker="w", routed=True)
    assert first is not None and first.pk == later.pk
    # The routed task of *later* came second (its reply already taken by another): it takes the oldest.
    again = reply_start(message_id=later.pk, task_id="t2", worker="w", routed=True)
    assert again is not None and again.pk == oldest.pk
    assert set(Message.objects.filter(role="assistant").values_list("status", flat=True)) == {"streaming"}


@pytest.mark.django_db(transaction=True)
def test_the_own_queue_of_a_worker_gone_quiet_is_dropped_and_not_counted(alice: object) -> None:
    """Its tasks then count as missing, and the reaper sends them again to the shared queue."""
    conversation = make_conversation(alice)
    gone = _offer_for(conversation.model_name, "gpu-d:4", conversation.pk)
    message_send(conversation=conversation, text="Hello")
    assert tasks_waiting(model_name=conversation.model_name) == 1
    gone.updated_at = time.time() - HEARTBEAT_TTL_S - 1
    offer_write(conversation.model_name, gone)
    assert tasks_waiting(model_name=conversation.model_name) == 0
    assert _tasks(gone.queue) == []
    # Only its offer: a worker of another test's stack may publish its own for the same model meanwhile.
    assert [o for o in offers_list(conversation.model_name) if o.name == gone.name] == []
