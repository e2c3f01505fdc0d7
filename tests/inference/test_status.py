"""Worker heartbeats and the reaper: a worker that stops beating has its replies interrupted, text kept."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.conf import settings as django_settings

from chat.models import Message
from chat.services.messages import message_send
from chat.services.replies import reply_save_progress, reply_start
from inference import status
from inference.runtime.catalog import queue_for_model
from inference.status import WorkerStatus, worker_alive, workers_list
from inference.worker import reaper as reaper_module
from inference.worker.heartbeat import Heartbeat
from inference.worker.reaper import Reaper
from tests.factories import UserFactory, make_conversation

pytestmark = pytest.mark.django_db(transaction=True)


def _streaming_reply(owner: object, worker: str) -> Message:
    _, reply = message_send(conversation=make_conversation(owner), text="Hello")
    started = reply_start(message_id=reply.pk, task_id="t1", worker=worker)
    assert started is not None
    reply_save_progress(message=started, content="Half an", reasoning="", tool_calls=[], seq=2)
    return started


def test_a_live_worker_is_listed_with_its_figures_and_gone_when_it_stops() -> None:
    def sample(s: WorkerStatus) -> None:
        s.slots_busy, s.slots_total = 1, 4

    beat = Heartbeat(WorkerStatus(name="gpu-a:1", model="tiny", state="ready"), sample).start()
    try:
        assert worker_alive("gpu-a:1")
        [listed] = [w for w in workers_list() if w.name == "gpu-a:1"]
        assert (listed.model, listed.state, listed.slots_busy, listed.slots_total) == ("tiny", "ready", 1, 4)
        assert listed.ram_total == 0 or listed.ram_total > 0
    finally:
        beat.stop()
    assert not worker_alive("gpu-a:1")


def test_the_replies_of_a_worker_without_heartbeat_become_interrupted_and_keep_their_text(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = _streaming_reply(alice, worker="gpu-gone:42")
    reaper = Reaper()
    assert reaper.run_once() == 0  # missing only just now: maybe a Redis restart, wait
    reply.refresh_from_db()
    assert reply.status == "streaming"
    monkeypatch.setattr(reaper_module.time, "monotonic", lambda: 10_000.0 + Reaper.MISSING_FOR_S)
    reaper._missing_since = dict.fromkeys(reaper._missing_since, 10_000.0)
    assert reaper.run_once() == 1
    reply.refresh_from_db()
    assert reply.status == "interrupted" and reply.content == "Half an"
    assert "press Retry" in reply.error


def test_the_replies_of_a_live_worker_are_left_alone(alice: object, monkeypatch: pytest.MonkeyPatch) -> None:
    beat = Heartbeat(WorkerStatus(name="gpu-b:7", model="tiny", state="ready"), lambda s: None).start()
    try:
        reply = _streaming_reply(alice, worker="gpu-b:7")
        reaper = Reaper()
        reaper.run_once()
        monkeypatch.setattr(reaper_module.time, "monotonic", lambda: 10_000.0)
        assert reaper.run_once() == 0
        reply.refresh_from_db()
        assert reply.status == "streaming"
    finally:
        beat.stop()


def test_an_interrupted_reply_keeps_what_was_streamed_after_its_last_write(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import events

    reply = _streaming_reply(alice, worker="gpu-gone:43")  # stored: "Half an", seq 2
    for seq, text in ((1, "Half"), (2, " an"), (3, " answer"), (4, " so far")):
        delta = {"type": "delta", "message": reply.pk, "seq": seq, "reasoning": "", "content": text}
        assert events.stream_publish(reply.conversation_id, reply.pk, delta)
    reaper = Reaper()
    reaper.run_once()
    monkeypatch.setattr(reaper_module.time, "monotonic", lambda: 10_000.0 + Reaper.MISSING_FOR_S)
    reaper._missing_since = dict.fromkeys(reaper._missing_since, 10_000.0)
    assert reaper.run_once() == 1
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.stream_seq) == ("interrupted", "Half an answer so far", 4)


def test_a_stopped_reply_whose_worker_died_gives_its_tokens_back(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat.errors import ChatError
    from chat.services.replies import reply_cancel
    from inference.models import Quota

    Quota.objects.create(user=alice, daily_tokens=1000)
    reply = _streaming_reply(alice, worker="gpu-gone:44")
    reply_cancel(conversation=reply.conversation)  # Stop, and the worker dies before counting its tokens
    with pytest.raises(ChatError, match="held by replies still being written"):
        message_send(conversation=make_conversation(alice), text="Hello again")
    reaper = Reaper()
    reaper.run_once()
    monkeypatch.setattr(reaper_module.time, "monotonic", lambda: 10_000.0 + Reaper.MISSING_FOR_S)
    reaper._missing_since = dict.fromkeys(reaper._missing_since, 10_000.0)
    assert reaper.run_once() == 0  # nothing to interrupt: it was stopped
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("cancelled", "Half an")
    _, again = message_send(conversation=make_conversation(alice), text="Hello again")
    assert again.status == "queued"


def _queued_tasks(model_name: str = "tiny") -> list[int]:
    """Return the reply ids named by the tasks waiting in the model's Redis queue."""
    prefix = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    raw = status.redis_client().lrange(f"{prefix}{queue_for_model(model_name)}", 0, -1)
    return [int(json.loads(item)["headers"]["argsrepr"].strip("[]()").rstrip(",")) for item in raw]


def _lose_queued_tasks(model_name: str = "tiny") -> None:
    prefix = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    status.redis_client().delete(f"{prefix}{queue_for_model(model_name)}")


@pytest.fixture
def empty_queue() -> None:
    """Start with no task in the `tiny` queue (earlier tests of this run leave theirs there)."""
    _lose_queued_tasks()


def _later(reaper: Reaper, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Let *seconds* of the reaper's own observation pass."""
    now = reaper_module.time.monotonic() + seconds
    monkeypatch.setattr(reaper_module.time, "monotonic", lambda: now)


def test_a_reply_streaming_on_a_live_worker_that_no_longer_holds_it_is_interrupted_with_its_streamed_text(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that ended without storing its reply (e.g. its database died) leaves no `streaming` for ever."""
    from chat import events

    def holds(ids: list[int]) -> Callable[[WorkerStatus], None]:
        def sample(s: WorkerStatus) -> None:
            s.replies = ids

        return sample

    held: list[int] = []
    beat = Heartbeat(WorkerStatus(name="gpu-c:9", model="tiny", state="ready"), holds(held)).start()
    try:
        lost = _streaming_reply(alice, worker="gpu-c:9")  # stored: "Half an", seq 2
        kept = _streaming_reply(UserFactory(username="bob"), worker="gpu-c:9")
        held.append(kept.pk)
        beat.beat()
        for seq, text in ((3, " answer"), (4, " so far")):
            delta = {"type": "delta", "message": lost.pk, "seq": seq, "reasoning": "", "content": text}
            assert events.stream_publish(lost.conversation_id, lost.pk, delta)
        reaper = Reaper()
        assert reaper.run_once() == 0  # maybe claimed just before the worker's last beat: wait
        _later(reaper, monkeypatch, Reaper.MISSING_FOR_S)
        assert reaper.run_once() == 1
    finally:
        beat.stop()
    lost.refresh_from_db()
    kept.refresh_from_db()
    assert (lost.status, lost.content, lost.stream_seq) == ("interrupted", "Half an answer so far", 4)
    assert "press Retry" in lost.error
    assert kept.status == "streaming"


def test_queued_replies_whose_tasks_were_lost_are_sent_again_once_each(
    alice: object, monkeypatch: pytest.MonkeyPatch, empty_queue: None
) -> None:
    """A reply `queued` with no task (dropped while the database was down, lost with Redis) is sent again."""
    replies = [message_send(conversation=make_conversation(alice), text="Hi")[1] for _ in range(2)]
    assert sorted(_queued_tasks()) == sorted(r.pk for r in replies)
    _lose_queued_tasks()
    reaper = Reaper()
    assert reaper.run_once() == 0
    assert _queued_tasks() == []  # not at once: a task may be on its way
    _later(reaper, monkeypatch, 30)  # half a minute later, still no task
    reaper.run_once()
    assert sorted(_queued_tasks()) == sorted(r.pk for r in replies)
    reaper.run_once()
    assert len(_queued_tasks()) == 2  # each once, and no more while they wait


def test_after_redis_lost_its_data_only_the_missing_tasks_are_sent_again(
    alice: object, bob: object, empty_queue: None
) -> None:
    """A message sent just after Redis restarted empty is not enqueued a second time."""
    older = [message_send(conversation=make_conversation(alice), text="Hi")[1] for _ in range(2)]
    _lose_queued_tasks()  # Redis restarted empty
    _, fresh = message_send(conversation=make_conversation(bob), text="Hello")
    assert _queued_tasks() == [fresh.pk]
    assert Reaper.requeue() == 2
    assert len(_queued_tasks()) == 3 == len(older) + 1  # a task each (any task answers the oldest first)
