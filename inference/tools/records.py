"""What a tool call leaves: the record stored in ``Message.tool_calls`` and streamed in ``tool`` events.

Plain typing, no Django: the tool runners, the GPU worker, chat.events and the page's rendering all import it.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class ToolSource(TypedDict):
    """A page a browser call produced: what a citation 【cursor†Lx-Ly】 in the answer links to."""

    cursor: int
    url: str
    title: str
    # For search results: the result URL of each line ("12" → url), where lines link elsewhere than `url`.
    lines: NotRequired[dict[str, str]]


class ToolCallRecord(TypedDict):
    """One tool call of a reply (docs/protocol.md, `tool_calls`).

    A call that has started holds recipient, channel and arguments; once its tool returns it also holds
    `result` and `error` (and, when run, when it started and finished; for the browser, the pages it showed).
    """

    recipient: str
    channel: str
    arguments: str
    result: NotRequired[str]
    error: NotRequired[bool]
    started_at: NotRequired[str]  # ISO 8601
    finished_at: NotRequired[str]
    sources: NotRequired[list[ToolSource]]
