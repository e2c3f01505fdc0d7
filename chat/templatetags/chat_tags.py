"""How a message's facts read on the server-rendered page.

static/js/chat/format.js is the browser's side of the same definitions: the page and the live view show the
same words (tests/browser/test_rendering.py compares them).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils.safestring import SafeString, mark_safe

from chat.frames import ContextMeter, MessagePayload
from chat.rendering import message_sources, render_markdown
from inference.tools.records import ToolCallRecord

register = template.Library()

TOOL_STATE_LABEL = {"running": "running…", "failed": "error", "done": "done"}


@register.filter(name="markdown")
def markdown_filter(text: str, tool_calls: list[ToolCallRecord] | None = None) -> SafeString:
    """Render *text* as sanitized Markdown (chat.rendering guarantees it is safe).

    ``{{ message.content|markdown:message.tool_calls }}`` also turns the browser citations into links.
    """
    sources = message_sources(tool_calls) if tool_calls else None
    return mark_safe(render_markdown(text or "", sources))  # noqa: S308


def _fixed(value: float, digits: int) -> str:
    """Format *value* as JavaScript's ``toFixed(digits)`` does (an exact tie rounds up, not to even)."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


@register.filter
def duration_ms(ms: float | None) -> str:
    """Return a duration: "850 ms" below ten seconds, "12.0 s" from there (format.js formatMs)."""
    ms = ms or 0
    if ms >= 10000:
        return f"{_fixed(ms / 1000, 1)} s"
    return f"{_fixed(ms, 0)} ms"


@register.filter
def one_decimal(value: float) -> str:
    """Return *value* with one decimal, e.g. tokens per second (``toFixed(1)``)."""
    return _fixed(value, 1)


@register.filter
def ordinal(n: int) -> str:
    """Return "1st", "2nd", "3rd", "11th" … (format.js ordinal)."""
    suffix = "th"
    if not 11 <= n % 100 <= 13:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@register.filter
def tool_state(call: ToolCallRecord) -> str:
    """Return "running" (no result yet), "failed" (an error result) or "done" (format.js toolState)."""
    if call.get("result") is None:
        return "running"
    return "failed" if call.get("error") is True or re.match(r"Error:", str(call["result"])) else "done"


@register.filter
def tool_state_label(state: str) -> str:
    """Return the words a tool card shows for its *state*."""
    return TOOL_STATE_LABEL[state]


@register.filter
def in_flight(status: str) -> bool:
    """Return whether a reply with *status* is still queued or streaming."""
    return status in ("queued", "streaming")


@register.filter
def reasoning_live(reasoning: str, m: MessagePayload) -> bool:
    """Return whether the reasoning still streams (no answer text yet): it shows open, titled "Reasoning…"."""
    return bool(reasoning) and m["status"] == "streaming" and not m["content"]


@register.filter
def tokens_short(n: int) -> str:
    """Return a token count in few characters: "950", "3.2k", "131k" (format.js formatTokens)."""
    if n < 1000:
        return str(n)
    short = _fixed(n / 1000, 1 if n < 10000 else 0)
    return f"{short.removesuffix('.0')}k"


@register.filter
def context_room(c: ContextMeter) -> int:
    """Return the tokens the turns may use before the oldest are left out: the context less the answer's."""
    return max(0, c["window"] - c["reserve"])


@register.filter
def context_full(c: ContextMeter) -> bool:
    """Return whether the next reply will leave the oldest turns out (format.js contextFull)."""
    return c["used"] > context_room(c)
