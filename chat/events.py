"""Everything broadcast to conversation groups is built and sent here, after commit."""

from __future__ import annotations

from typing import Any

from chat.models import Message


def conversation_group(conversation_id: int) -> str:
    """Return the channel-layer group of a conversation's sockets."""
    return f"conversation.{conversation_id}"


def message_payload(message: Message) -> dict[str, Any]:
    """Return the stored state of *message* as the browser receives it."""
    return {
        "id": message.pk,
        "role": message.role,
        "status": message.status,
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": message.tool_calls,
        "error": message.error,
        "notice": message.notice,
        "reasoning_effort": message.reasoning_effort,
        "stats": {
            "prompt_tokens": message.prompt_tokens,
            "reasoning_tokens": message.reasoning_tokens,
            "answer_tokens": message.answer_tokens,
            "queue_wait_ms": message.queue_wait_ms,
            "ttft_ms": message.ttft_ms,
            "tokens_per_second": message.tokens_per_second,
        },
    }


def conversation_state(conversation_id: int) -> dict[str, Any]:
    """Return the stored state of a conversation: what a (re)connecting socket is sent first."""
    messages = Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "id")
    return {
        "type": "state",
        "conversation": conversation_id,
        "messages": [message_payload(m) for m in messages],
    }
