"""The frames of the conversation WebSocket, as types (docs/protocol.md): what the server sends, what the
browser sends. JSON on the wire; these TypedDicts say what each frame holds. Plain typing, no Django.

Server → browser: `StateFrame` (the first frame, and the answer to `sync`), the broadcast frames chat.events
sends to a conversation's sockets (`BroadcastFrame`, stream events included), and the `ack` / `error` that
answer the sender of a frame. Browser → server: one frame per action (`ClientFrame`).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from inference.tools.records import ToolCallRecord

# --- Server → browser --------------------------------------------------------------------------------------


class Stats(TypedDict):
    prompt_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    queue_wait_ms: int | None
    ttft_ms: int | None
    tokens_per_second: float | None


class BranchPosition(TypedDict):
    """Where a message of the branch on screen stands among its siblings (the versions edits and regenerates
    made): `index` of `count` from 1, oldest first, and the ids of the siblings before and after it."""

    index: int
    count: int
    previous: int | None
    next: int | None


class ContextMeter(TypedDict):
    """How much of the model's context the branch on screen uses (`used` of `window` tokens), and how many
    tokens the next reply keeps for its answer (`reserve`): when `used + reserve` exceeds `window`, the next
    reply leaves the oldest turns out."""

    used: int
    window: int
    reserve: int


class MessagePayload(TypedDict):
    """A stored message as the browser receives it (`M` in docs/protocol.md)."""

    id: int
    role: str
    status: str
    reply_to: int | None
    content: str
    reasoning: str
    tool_calls: list[ToolCallRecord]
    error: str
    notice: str
    reasoning_effort: str
    model_name: str
    seq: int
    html: str
    stats: Stats
    queue_position: int | None
    # While queued: why it waits beyond its place, e.g. that no GPU worker serves its model ("" when served).
    waiting: str
    retryable: bool
    # In a `state` frame only: its place among its siblings (other frames leave the browser's as it was).
    branch: NotRequired[BranchPosition]


class StateFrame(TypedDict):
    type: Literal["state"]
    conversation: int
    title: str
    messages: list[MessagePayload]  # the branch on screen, first to last
    context: NotRequired[ContextMeter]  # absent on the start page, before its conversation exists


class MessageFrame(TypedDict):
    type: Literal["message"]
    message: MessagePayload


class DoneFrame(TypedDict):
    type: Literal["done"]
    message: MessagePayload


class BranchFrame(TypedDict):
    """The branch on screen changed (an edit, a regenerate, a switch): each socket sends its browser the
    new `state` instead of this frame."""

    type: Literal["branch"]


class QueuedFrame(TypedDict):
    type: Literal["queued"]
    message: int
    position: int
    # Present when whether a GPU worker serves the reply's model changed ("" when one does again).
    waiting: NotRequired[str]


class StartedFrame(TypedDict):
    type: Literal["started"]
    message: int


class CreatedFrame(TypedDict):
    """Only to the start page's socket: its first message started this conversation, which it now follows."""

    type: Literal["created"]
    conversation: int
    url: str


class TitleFrame(TypedDict):
    type: Literal["title"]
    title: str


class DeltaEvent(TypedDict):
    type: Literal["delta"]
    message: int
    seq: int
    at: float
    reasoning: str
    content: str


class ToolEvent(TypedDict):
    type: Literal["tool"]
    message: int
    seq: int
    at: float
    index: int
    call: ToolCallRecord


class NoticeEvent(TypedDict):
    type: Literal["notice"]
    message: int
    seq: int
    at: float
    notice: str


StreamEvent = DeltaEvent | ToolEvent | NoticeEvent
"""A seq-numbered stream event of a reply, as published by the GPU worker's task (docs/protocol.md)."""

BroadcastFrame = (
    MessageFrame | DoneFrame | BranchFrame | QueuedFrame | StartedFrame | TitleFrame | StreamEvent
)
"""What chat.events sends to every socket of a conversation (through the channel layer)."""


SidebarChange = Literal[
    "created", "title", "reply", "pinned", "unpinned", "archived", "restored", "moved", "deleted", "projects"
]


class SidebarFrame(TypedDict):
    """To every socket of a user: their sidebar changed. The browser fetches the conversation's row (or
    drops it, `deleted`); `projects` (conversation None) means the list of projects changed."""

    type: Literal["sidebar"]
    change: SidebarChange
    conversation: int | None


class SidebarEventMessage(TypedDict):
    """The channel-layer message that carries a sidebar frame to a user's consumers."""

    type: Literal["chat.sidebar"]
    payload: SidebarFrame


class RecheckMessage(TypedDict):
    """The channel-layer message that asks a user's consumers to check their session now."""

    type: Literal["chat.recheck"]


class AckFrame(TypedDict):
    """Only to the sender: its frame was stored."""

    type: Literal["ack"]
    action: str | None
    client_id: str | None


class ErrorFrame(TypedDict):
    """Only to the sender: its frame failed, nothing was stored (`action` is None for an unreadable one)."""

    type: Literal["error"]
    action: str | None
    client_id: str | None
    message: str


ServerFrame = StateFrame | BroadcastFrame | SidebarFrame | AckFrame | ErrorFrame


class ChatEventMessage(TypedDict):
    """The channel-layer message that carries a broadcast frame to a conversation's consumers."""

    type: Literal["chat.event"]
    payload: BroadcastFrame


# --- Browser → server (after chat.consumers validated them) -------------------------------------------------


class SendFrame(TypedDict):
    action: Literal["send"]
    text: str
    client_id: NotRequired[str]


class StopFrame(TypedDict):
    action: Literal["stop"]
    client_id: NotRequired[str]


class RegenerateFrame(TypedDict):
    action: Literal["regenerate"]
    message: int  # the id of an answer on the branch on screen
    client_id: NotRequired[str]


class EditFrame(TypedDict):
    action: Literal["edit"]
    message: int  # the id of a question on the branch on screen
    text: str
    client_id: NotRequired[str]


class SwitchFrame(TypedDict):
    action: Literal["switch"]
    message: int  # the id of the sibling to show (a version of a message on the branch on screen)
    client_id: NotRequired[str]


class SyncFrame(TypedDict):
    action: Literal["sync"]
    client_id: NotRequired[str]


ClientFrame = SendFrame | StopFrame | RegenerateFrame | EditFrame | SwitchFrame | SyncFrame
