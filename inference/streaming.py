"""The task side of live streaming: seq-numbered stream events, coalesced to about 20 a second.

Text is published at once when nothing was sent for PUBLISH_EVERY_S (so the first token goes out with no
delay), otherwise gathered until then. Tool calls and notices go out at once, after any pending text, so the
browser sees everything in the order the model produced it.

While Redis fails, nothing is published: the text keeps going to PostgreSQL. After the next database write,
publishing resumes one seq number further on, so a connected browser sees the gap and reloads the stored
state rather than silently missing what was generated during the outage (docs/protocol.md).
"""

from __future__ import annotations

import time
from typing import Any

from chat import events

PUBLISH_EVERY_S = 0.05


class ReplyPublisher:
    def __init__(self, conversation_id: int, message_id: int) -> None:
        self.conversation_id = conversation_id
        self.message_id = message_id
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

    def tool(self, index: int, call: dict[str, Any]) -> None:
        """Publish tool call *index* (started, or finished with its result)."""
        self.flush()
        self._publish({"type": "tool", "index": index, "call": call})

    def notice(self, notice: str) -> None:
        self.flush()
        self._publish({"type": "notice", "notice": notice})

    def flush(self) -> int:
        """Publish pending text; return the seq of the last event that holds everything so far."""
        if self._reasoning or self._content:
            self._publish({"type": "delta", "reasoning": self._reasoning, "content": self._content})
            self._reasoning = self._content = ""
        return self.seq

    def stored(self) -> int:
        """Call before each database write of the reply's text; return the seq to store with it."""
        self.flush()
        if self._degraded:
            self._degraded = False
            self.seq += 1  # the hole: connected browsers resync from what is about to be stored
        return self.seq

    def _publish(self, event: dict[str, Any]) -> None:
        self._last_publish = time.monotonic()
        if self._degraded:
            return
        self.seq += 1
        event = {**event, "message": self.message_id, "seq": self.seq, "at": time.time()}
        if not events.stream_publish(self.conversation_id, self.message_id, event):
            self._degraded = True
