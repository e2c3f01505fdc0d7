"""The task's publisher: seq numbers without gaps, coalescing, and what a Redis outage leaves behind."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chat.events import apply_stream_event
from inference.worker import streaming
from inference.worker.streaming import ReplyPublisher


class Sent(list[dict[str, Any]]):
    """What the publisher sent; Redis refuses everything while `down` is True."""

    down = False

    def publish(self, conversation_id: int, message_id: int, event: dict[str, Any]) -> bool:
        if self.down:
            return False
        self.append(event)
        return True


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    recorder = Sent()
    monkeypatch.setattr(streaming.events, "stream_publish", recorder.publish)
    return recorder


def test_the_first_text_goes_out_at_once_and_later_text_is_coalesced(sent: Sent) -> None:
    publisher = ReplyPublisher(1, 7)
    publisher.text(content="Hel")
    assert [e["content"] for e in sent] == ["Hel"]
    for piece in ("lo", " wor", "ld"):
        publisher.text(content=piece)
    assert len(sent) == 1  # within 50 ms: gathered
    time.sleep(streaming.PUBLISH_EVERY_S)
    publisher.text(content="!")
    assert [e["content"] for e in sent] == ["Hel", "lo world!"]
    assert [e["seq"] for e in sent] == [1, 2] and all(e["message"] == 7 for e in sent)


def test_tool_calls_and_notices_go_out_after_the_pending_text_in_order(sent: Sent) -> None:
    publisher = ReplyPublisher(1, 7)
    publisher.text(reasoning="Let me check.")
    publisher.text(reasoning=" The weather.")
    publisher.tool(0, {"recipient": "functions.get_weather", "arguments": "{}"})
    publisher.notice("The answer stopped at its length limit.")
    assert [(e["type"], e["seq"]) for e in sent] == [("delta", 1), ("delta", 2), ("tool", 3), ("notice", 4)]
    assert sent[1]["reasoning"] == " The weather."
    assert publisher.stored() == 4


def test_after_a_redis_outage_publishing_resumes_past_a_hole_so_browsers_resync(
    sent: Sent,
) -> None:
    publisher = ReplyPublisher(1, 7)
    publisher.text(content="Before ")
    sent.down = True
    time.sleep(streaming.PUBLISH_EVERY_S)
    publisher.text(content="during ")
    sent.down = False
    time.sleep(streaming.PUBLISH_EVERY_S)
    publisher.text(content="lost? ")  # still degraded: nothing goes out until the text is stored
    assert [e["seq"] for e in sent] == [1]
    stored_seq = publisher.stored()  # the database now holds "Before during lost? "
    assert stored_seq == 3  # 2 was taken by the failed send; 3 is the hole
    time.sleep(streaming.PUBLISH_EVERY_S)
    publisher.text(content="after")
    assert [e["seq"] for e in sent] == [1, 4]
    # A browser that had seq 1 sees 4: a gap, so it reloads the stored state (seq 3) and applies 4.
    payload: Any = {"content": "Before during lost? ", "reasoning": "", "tool_calls": [], "seq": stored_seq}
    apply_stream_event(payload, sent[-1])
    assert payload["content"] == "Before during lost? after"


def test_the_text_the_task_stores_is_the_fold_of_every_event_it_made_even_while_redis_is_down(
    sent: Sent,
) -> None:
    """The task keeps no text of its own: it stores what its events add up to, by the browser's fold."""
    publisher = ReplyPublisher(1, 7)
    publisher.text(reasoning="Check the weather.")
    started = {"recipient": "functions.get_weather", "arguments": "{}"}
    publisher.tool(0, started)
    publisher.tool(0, {**started, "result": "sunny"})
    sent.down = True
    publisher.text(content="It is ")
    time.sleep(streaming.PUBLISH_EVERY_S)
    publisher.text(content="sunny.")
    publisher.notice("The answer stopped at its length limit.")
    seq = publisher.stored()
    assert publisher.reply["content"] == "It is sunny."
    assert publisher.reply["reasoning"] == "Check the weather."
    assert publisher.reply["tool_calls"] == [{**started, "result": "sunny"}]
    assert publisher.reply["notice"] == "The answer stopped at its length limit."
    # A browser that applied every event that went out agrees with it up to the outage.
    browser: Any = {"content": "", "reasoning": "", "tool_calls": [], "notice": "", "seq": 0}
    for event in sent:
        apply_stream_event(browser, event)
    assert (browser["reasoning"], browser["tool_calls"]) == (
        publisher.reply["reasoning"],
        publisher.reply["tool_calls"],
    )
    assert browser["seq"] < seq  # the rest reaches it from the stored state, after the hole
