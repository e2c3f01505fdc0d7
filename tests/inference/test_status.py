"""Worker heartbeats and the reaper: a worker that stops beating has its replies interrupted, text kept."""

from __future__ import annotations

import pytest

from chat.models import Message
from chat.services import generation_save_progress, generation_start, message_send
from inference import status
from inference.status import Heartbeat, Reaper, WorkerStatus, worker_alive, workers_list
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)


def _streaming_reply(owner: object, worker: str) -> Message:
    _, reply = message_send(conversation=make_conversation(owner), text="Hello")
    started = generation_start(message_id=reply.pk, task_id="t1", worker=worker)
    assert started is not None
    generation_save_progress(message=started, content="Half an", reasoning="", tool_calls=[], seq=2)
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
    monkeypatch.setattr(status.time, "monotonic", lambda: 10_000.0 + Reaper.MISSING_FOR_S)
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
        monkeypatch.setattr(status.time, "monotonic", lambda: 10_000.0)
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
    monkeypatch.setattr(status.time, "monotonic", lambda: 10_000.0 + Reaper.MISSING_FOR_S)
    reaper._missing_since = dict.fromkeys(reaper._missing_since, 10_000.0)
    assert reaper.run_once() == 1
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.stream_seq) == ("interrupted", "Half an answer so far", 4)


def test_a_stopped_reply_whose_worker_died_gives_its_tokens_back(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat.services import ChatError, generation_cancel
    from inference.models import Quota

    Quota.objects.create(user=alice, daily_tokens=1000)
    reply = _streaming_reply(alice, worker="gpu-gone:44")
    generation_cancel(conversation=reply.conversation)  # Stop, and the worker dies before counting its tokens
    with pytest.raises(ChatError, match="held by answers still being generated"):
        message_send(conversation=make_conversation(alice), text="Hello again")
    reaper = Reaper()
    reaper.run_once()
    monkeypatch.setattr(status.time, "monotonic", lambda: 10_000.0 + Reaper.MISSING_FOR_S)
    reaper._missing_since = dict.fromkeys(reaper._missing_since, 10_000.0)
    assert reaper.run_once() == 0  # nothing to interrupt: it was stopped
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("cancelled", "Half an")
    _, again = message_send(conversation=make_conversation(alice), text="Hello again")
    assert again.status == "queued"
