"""Play the GPU worker through the services and the stream, as inference.worker.tasks does, so that a browser
test holds a reply in any state it likes (and any text: math, code) while it looks at the page.

The conversation's model must be one no worker serves (its replies stay queued until `start` claims them);
the `worker_heartbeat` fixture (tests/browser/conftest.py) keeps the reaper from interrupting them.
"""

from __future__ import annotations

import time
from typing import Any

from chat.events import stream_publish
from chat.models import Conversation, Message
from chat.services import messages, replies

WORKER = "render-test-worker"


def stream(message: Message, seq: int, **event: Any) -> None:
    stream_publish(
        message.conversation_id, message.pk, {"message": message.pk, "seq": seq, "at": time.time(), **event}
    )


def start(conversation: Conversation, text: str) -> Message:
    """Send *text* and claim its reply as a GPU worker does; return the reply."""
    _, reply = messages.message_send(conversation=conversation, text=text)
    claimed = replies.reply_start(message_id=reply.pk, task_id=f"render-{reply.pk}", worker=WORKER)
    assert claimed is not None and claimed.pk == reply.pk
    replies.reply_announce(message=claimed)
    return claimed


def finish(
    reply: Message, status: str, content: str, tool_calls: list[dict], *, seq: int, **fields: Any
) -> None:
    """Store the end of *reply* as the GPU worker's task does."""
    figures = {"queue_wait_ms": None, "ttft_ms": None, "tokens_per_second": None}
    if fields.get("ttft_ms") is not None:
        figures["tokens_per_second"] = 23.45
    figures.update({k: v for k, v in fields.items() if k in figures})
    replies.reply_finish(
        message=reply, status=status, content=content, reasoning=fields.get("reasoning", ""),
        tool_calls=tool_calls, seq=seq,
        prompt_tokens=120, reasoning_tokens=7, answer_tokens=9, error=fields.get("error", ""), **figures,
    )  # fmt: skip
