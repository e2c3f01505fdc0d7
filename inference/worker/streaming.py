"""The task side of live streaming: seq-numbered stream events, coalesced to about 20 a second.

Text is published at once when nothing was sent for PUBLISH_EVERY_S (so the first token goes out with no
delay), otherwise gathered until then. Tool calls and notices go out at once, after any pending text, so the
browser sees everything in the order the model produced it.

While Redis fails, nothing is published: the text keeps going to PostgreSQL. After the next database write,
publishing resumes one seq number further on, so a connected browser sees the gap and reloads the stored
state rather than silently missing what was generated during the outage (docs/protocol.md).

Every event, published or not, is folded into `ReplyPublisher.reply` with chat.events.apply_stream_event, the
fold the browser, the reconnecting socket and the reaper apply: that is the text the task stores.
"""

from __future__ import annotations

import time

from chat import events
from chat.events import StreamedText, apply_stream_event
from chat.frames import DeltaEvent, NoticeEvent, StreamEvent, ToolEvent
from inference.tools.records import ToolCallRecord

PUBLISH_EVERY_S = 0.05


class ReplyPublisher:
    def __init__(self, conversation_id: int, message_id: int, reply: StreamedText | None = None) -> None:
        self.conversation_id = conversation_id
        self.message_id = message_id
        # The reply's text as of the last event (pending text is not in it until `flush`).
        self.reply = reply if reply is not None else events.streamed_text()
        self.seq = 0
        self._reasoning = ""
        self._content = ""
        self._last_publish = 0.0
        self._degraded = False  # Redis failed since the last database write

    def text(self, *, reasoning: str = "", content: str = "") -> None:
        """Add generated text; publish it now if the last publish is old enough."""
        self._reasoning += reasoning
        self._content += content
        if time.monotonic() - self._last_publish >= PUBLISH_EVERY_S:
            self.flush()

    def tool(self, index: int, call: ToolCallRecord) -> None:
        """Publish tool call *index* (started, or finished with its result)."""
        self.flush()
        at, seq = self._number()
        self._send(ToolEvent(type="tool", message=self.message_id, seq=seq, at=at, index=index, call=call))

    def notice(self, notice: str) -> None:
        self.flush()
        at, seq = self._number()
        self._send(NoticeEvent(type="notice", message=self.message_id, seq=seq, at=at, notice=notice))

    def flush(self) -> int:
        """Publish pending text; return the seq of the last event that holds everything so far."""
        if self._reasoning or self._content:
            at, seq = self._number()
            reasoning, content = self._reasoning, self._content
            self._reasoning = self._content = ""
            self._send(
                DeltaEvent(
                    type="delta",
                    message=self.message_id,
                    seq=seq,
                    at=at,
                    reasoning=reasoning,
                    content=content,
                )
            )
        return self.seq

    def stored(self) -> int:
        """Call before each database write of the reply's text; return the seq to store with it."""
        self.flush()
        if self._degraded:
            self._degraded = False
            self.seq += 1  # the hole: connected browsers resync from what is about to be stored
        return self.seq

    def _number(self) -> tuple[float, int]:
        """Return the time and the seq of the next event (no new seq while Redis is failing)."""
        self._last_publish = time.monotonic()
        if not self._degraded:
            self.seq += 1
        return time.time(), self.seq

    def _send(self, event: StreamEvent) -> None:
        apply_stream_event(self.reply, event)
        if not self._degraded and not events.stream_publish(self.conversation_id, self.message_id, event):
            self._degraded = True
