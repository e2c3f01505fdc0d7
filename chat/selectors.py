"""Reads: what a page or a consumer shows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from chat import events
from chat.frames import BranchPosition, ContextMeter, StateFrame
from chat.models import (
    ApiKey,
    ApiRequest,
    Conversation,
    GroupApiAccess,
    GroupReasoning,
    Message,
    Profile,
    Project,
    ReasoningVisibility,
    Share,
)
from gptoss_web.reads import read_once
from inference.selectors import model_budget_get, waiting_note

# The path from a message up to its conversation's first message, by parent links: one index probe a step.
_PATH_SQL = """
WITH RECURSIVE path(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM chat_message WHERE id = %s
    UNION ALL
    SELECT m.id, m.parent_id, path.depth + 1 FROM chat_message AS m JOIN path ON m.id = path.parent_id
)
SELECT id FROM path ORDER BY depth DESC
"""

# The messages of that path themselves, in the same order (one query: the next reply's prompt waits on it).
_PATH_MESSAGES_SQL = _PATH_SQL.replace(
    "SELECT id FROM path ORDER BY depth DESC",
    "SELECT m.* FROM chat_message AS m JOIN path ON m.id = path.id ORDER BY path.depth DESC",
)

# From a message down to the newest leaf under it, taking the most recently created child at each step.
_NEWEST_LEAF_SQL = """
WITH RECURSIVE down(id, depth) AS (
    SELECT id, 0 FROM chat_message WHERE id = %s
    UNION ALL
    SELECT (SELECT c.id FROM chat_message AS c WHERE c.parent_id = down.id
            ORDER BY c.created_at DESC, c.id DESC LIMIT 1), down.depth + 1
    FROM down WHERE EXISTS (SELECT 1 FROM chat_message AS c WHERE c.parent_id = down.id)
)
SELECT id FROM down ORDER BY depth DESC LIMIT 1
"""


def conversation_list(*, user: User) -> QuerySet[Conversation]:
    """Return *user*'s conversations, most recently active first."""
    return Conversation.objects.filter(owner_id=user.pk, ephemeral=False).order_by("-updated_at", "-id")


# --- The sidebar -------------------------------------------------------------------------------------------

# Rows per page of the sidebar (and of a project's or the archived list): the rest load as the user scrolls.
SIDEBAR_PAGE = 30

RECENCY_HEADINGS = {"pinned": "Pinned", "today": "Today", "week": "Previous 7 days", "older": "Older"}


@dataclass(frozen=True)
class Cursor:
    """Where a page of conversations resumes: after the row (updated_at, id), in the order newest first.

    Keyset, never an offset: a conversation created or updated while the user scrolls moves above the
    cursor (its updated_at is newer), so the next pages neither repeat nor skip a row for it.
    """

    updated_at: datetime
    id: int

    def __str__(self) -> str:
        micros = int(self.updated_at.timestamp()) * 1_000_000 + self.updated_at.microsecond
        return f"{micros}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """Return the cursor *text* (`<microseconds since 1970>.<id>`) names, or None if it is not one."""
        micros, _, pk = text.partition(".")
        if not (micros.isdigit() and pk.isdigit()) or len(micros) > 17 or len(pk) > 18:
            return None
        seconds, rest = divmod(int(micros), 1_000_000)
        try:
            moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest)
        except (OverflowError, ValueError, OSError):
            return None
        return cls(moment, int(pk))


@dataclass(frozen=True)
class SidebarRow:
    """A conversation as a list shows it: under which recency group, and whether a heading starts it."""

    conversation: Conversation
    group: str  # a key of RECENCY_HEADINGS
    heading: str  # "" unless this row starts a group

    @property
    def sort_key(self) -> str:
        """Return where the row sorts (its cursor): the browser places a live update among the rows by it."""
        return str(Cursor(self.conversation.updated_at, self.conversation.pk))


@dataclass(frozen=True)
class SidebarPage:
    rows: list[SidebarRow]
    next_cursor: Cursor | None  # None: this was the last page


def recency_group(moment: datetime, *, today: date | None = None) -> str:
    """Return the group of a conversation last active at *moment*: today, week (the 7 days before today)
    or older, by the calendar of the server's time zone (TIME_ZONE, `DJANGO_TIME_ZONE`)."""
    today = today or timezone.localdate()
    day = timezone.localtime(moment).date()
    if day >= today:
        return "today"
    if day >= today - timedelta(days=7):
        return "week"
    return "older"


def sidebar_rows(conversations: Sequence[Conversation], *, after: Cursor | None = None) -> list[SidebarRow]:
    """Return *conversations* (newest first) as rows, each group headed once: a page that continues after
    *after* repeats no heading the page before it ended with."""
    today = timezone.localdate()
    previous = recency_group(after.updated_at, today=today) if after else ""
    rows = []
    for conversation in conversations:
        group = recency_group(conversation.updated_at, today=today)
        rows.append(SidebarRow(conversation, group, RECENCY_HEADINGS[group] if group != previous else ""))
        previous = group
    return rows


def _listed(user: User) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner_id=user.pk, ephemeral=False).select_related("project")


def _page(queryset: QuerySet[Conversation], after: Cursor | None, size: int) -> SidebarPage:
    if after is not None:
        queryset = queryset.filter(
            Q(updated_at__lt=after.updated_at) | Q(updated_at=after.updated_at, id__lt=after.id)
        )
    found = list(queryset.order_by("-updated_at", "-id")[: size + 1])
    rows, more = found[:size], len(found) > size
    next_cursor = Cursor(rows[-1].updated_at, rows[-1].pk) if more else None
    return SidebarPage(sidebar_rows(rows, after=after), next_cursor)


def sidebar_page(*, user: User, after: Cursor | None = None, size: int = SIDEBAR_PAGE) -> SidebarPage:
    """Return a page of *user*'s sidebar below the pinned ones: unarchived, unpinned conversations (those in
    projects too), newest first, after *after*."""
    listed = _listed(user).filter(archived_at__isnull=True, pinned_at__isnull=True)
    return _page(listed, after, size)


def pinned_list(*, user: User) -> list[SidebarRow]:
    """Return *user*'s pinned conversations (at most MAX_PINNED), most recently active first."""
    pinned = _listed(user).filter(pinned_at__isnull=False).order_by("-updated_at", "-id")
    return [SidebarRow(c, "pinned", "") for c in pinned]


def archived_page(*, user: User, after: Cursor | None = None, size: int = SIDEBAR_PAGE) -> SidebarPage:
    """Return a page of *user*'s archived conversations, most recently active first."""
    return _page(_listed(user).filter(archived_at__isnull=False), after, size)


def project_conversation_page(
    *, project: Project, after: Cursor | None = None, size: int = SIDEBAR_PAGE
) -> SidebarPage:
    """Return a page of *project*'s conversations (archived ones too: they are marked), newest first."""
    listed = _listed(project.owner).filter(project_id=project.pk)
    return _page(listed, after, size)


def sidebar_row_get(*, conversation: Conversation) -> SidebarRow:
    """Return *conversation* as its row in the sidebar (a live update places it among the rows shown)."""
    if conversation.pinned_at is not None:
        return SidebarRow(conversation, "pinned", "")
    return SidebarRow(conversation, recency_group(conversation.updated_at), "")


def project_conversation_count(*, project: Project) -> int:
    """Return how many conversations *project* holds (its delete page says what ticking the box deletes)."""
    return Conversation.objects.filter(project_id=project.pk, ephemeral=False).count()


def project_list(*, user: User) -> QuerySet[Project]:
    """Return *user*'s projects, by name."""
    return Project.objects.filter(owner_id=user.pk).order_by(Lower("name"), "id")


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    """Return the messages of the branch on screen of *conversation*, first to last."""
    return shown_messages(conversation_ids=[conversation.pk])


def shown_messages(*, conversation_ids: Iterable[int]) -> QuerySet[Message]:
    """Return the branch on screen of several conversations, each conversation's first to last.

    The branch is the path from the root to the conversation's current leaf; its rows carry `on_branch`
    (chat.services.branches keeps both together). A message is always written after its parent, so the
    order written is the path's order.
    """
    return Message.objects.filter(conversation_id__in=list(conversation_ids), on_branch=True).order_by(
        "conversation_id", "created_at", "id"
    )


def branch_path_ids(*, leaf_id: int | None) -> list[int]:
    """Return the ids of the path from the first message down to *leaf_id* (included), by parent links."""
    if leaf_id is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_PATH_SQL, [leaf_id])
        return [row[0] for row in cursor.fetchall()]


def branch_newest_leaf_id(*, message_id: int) -> int:
    """Return the newest leaf under *message_id* (itself when it has no children): the most recently created
    child at each step."""
    with connection.cursor() as cursor:
        cursor.execute(_NEWEST_LEAF_SQL, [message_id])
        row = cursor.fetchone()
    return int(row[0]) if row else message_id


def branch_positions(*, conversation: Conversation, messages: list[Message]) -> dict[int, BranchPosition]:
    """Return where each of *messages* (the branch on screen) stands among its siblings, the versions an
    edit or a regenerate made of it: "2 / 3", and the siblings before and after it, oldest first. One query.
    """
    parents = {m.parent_id for m in messages if m.parent_id is not None}
    siblings: dict[int | None, list[int]] = {}
    rows = (
        Message.objects.filter(conversation_id=conversation.pk)
        .filter(Q(parent_id__in=parents) | Q(parent__isnull=True))
        .order_by("created_at", "id")
        .values_list("id", "parent_id")
    )
    for pk, parent_id in rows:
        siblings.setdefault(parent_id, []).append(pk)
    positions: dict[int, BranchPosition] = {}
    for message in messages:
        group = siblings.get(message.parent_id, [message.pk])
        index = group.index(message.pk) if message.pk in group else 0
        positions[message.pk] = {
            "index": index + 1,
            "count": len(group),
            "previous": group[index - 1] if index > 0 else None,
            "next": group[index + 1] if index + 1 < len(group) else None,
        }
    return positions


def context_meter_get(*, conversation: Conversation, messages: list[Message]) -> ContextMeter:
    """Return how much of the model's context the branch on screen *messages* uses, and how much the next
    reply keeps for its answer.

    The next prompt is the last reply's prompt and answer plus the next question (harmony keeps no reasoning
    of finished turns), so the last reply that counted its prompt gives the figure. When it and the answer
    budget outgrow the context, the GPU worker leaves the oldest turns out (inference.worker.tasks says so
    in a notice): the page warns before that.
    """
    budget = model_budget_get(name=conversation.model_name)
    limit = conversation.max_answer_tokens  # as inference.quotas.answer_budget: a limit only lowers it
    reserve = budget.answer_tokens if limit is None else min(budget.answer_tokens, limit)
    used = 0
    for message in reversed(messages):
        if message.role == Message.Role.ASSISTANT and message.prompt_tokens:
            used = message.prompt_tokens + message.answer_tokens
            break
    return {"used": used, "window": budget.context, "reserve": reserve}


def queue_positions(*, model_name: str) -> list[tuple[int, int, int]]:
    """Return (conversation id, message id, position from 1) of every reply queued for *model_name*.

    First come, first served: the Celery queue hands out tasks in the order the replies were created.
    """
    queued = Message.objects.filter(
        status=Message.Status.QUEUED, model_name=model_name, role=Message.Role.ASSISTANT
    ).order_by("created_at", "id")
    return [(c, m, i) for i, (c, m) in enumerate(queued.values_list("conversation_id", "id"), start=1)]


def queue_position_get(*, message: Message) -> int | None:
    """Return *message*'s place in its model's queue (1 = next), or None when it is not queued."""
    if message.status != Message.Status.QUEUED:
        return None
    ahead = Message.objects.filter(
        status=Message.Status.QUEUED, model_name=message.model_name, role=Message.Role.ASSISTANT
    ).filter(Q(created_at__lt=message.created_at) | Q(created_at=message.created_at, id__lt=message.pk))
    return ahead.count() + 1


def reply_waiting_get(*, message: Message) -> str:
    """Return why the queued *message* waits beyond its place (nobody serves its model), else ""."""
    if message.status != Message.Status.QUEUED:
        return ""
    return waiting_note(model_name=message.model_name)


def conversation_state(*, conversation: Conversation) -> StateFrame:
    """Return what a (re)connecting socket is sent first: the visible thread, caught up with live streams.

    A reply in flight is stored about once a second; the stream events published since (kept in Redis) are
    folded in, so the state is as new as the last event sent to the group (docs/protocol.md). Reasoning is
    left out when a group of the owner (the only one who may see the conversation) hides it.
    """
    shown = reasoning_shown(user=conversation.owner)
    messages = list(message_list(conversation=conversation))
    positions = branch_positions(conversation=conversation, messages=messages)
    payloads = []
    for message in messages:
        payload = events.message_payload(
            message,
            queue_position=queue_position_get(message=message),
            waiting=reply_waiting_get(message=message),
        )
        payload["branch"] = positions[message.pk]
        if message.status == Message.Status.STREAMING:
            for event in events.stream_events_after(message.pk, message.stream_seq) or []:
                events.apply_stream_event(payload, event)
            payload["html"] = ""  # the browser shows streamed text as text until `done`
        if not shown:
            payload["reasoning"] = ""
        payloads.append(payload)
    return {
        "type": "state",
        "conversation": conversation.pk,
        "title": conversation.display_title,
        "messages": payloads,
        "context": context_meter_get(conversation=conversation, messages=messages),
    }


def api_request_get(*, reply: Message) -> ApiRequest | None:
    """Return the API request behind *reply*, or None for a reply to the chat page (read with the reply
    where it was selected with `api_request`, as the worker's claim does)."""
    try:
        return reply.api_request
    except ApiRequest.DoesNotExist:
        return None


def message_in_flight(*, conversation: Conversation) -> bool:
    """Return whether a reply of the conversation is queued or streaming."""
    return Message.objects.filter(conversation_id=conversation.pk, status__in=Message.IN_FLIGHT).exists()


def replies_in_flight_count(*, user: User) -> int:
    """Return how many replies of *user* are queued or streaming, over all conversations."""
    return Message.objects.filter(conversation__owner_id=user.pk, status__in=Message.IN_FLIGHT).count()


def replies_in_flight_counts(*, conversation: Conversation) -> tuple[int, int]:
    """Return how many replies are queued or streaming in *conversation*, and over all its owner's
    conversations, in one query (a send checks both on the way to the first token)."""
    counts = Message.objects.filter(
        conversation__owner_id=conversation.owner_id, status__in=Message.IN_FLIGHT
    ).aggregate(here=Count("pk", filter=Q(conversation_id=conversation.pk)), everywhere=Count("pk"))
    return counts["here"], counts["everywhere"]


def finished_turns(*, reply: Message) -> list[tuple[str, str]]:
    """Return the (user text, answer text) pairs before *reply*'s question, oldest first: exactly the turns
    of its branch, its ancestors by parent links, whatever branch is on screen now.

    Replies that were stopped or interrupted count with the text they have; failed or empty ones leave their
    question out, so the model never sees a question without its answer. A question answered more than once
    on the branch (an API turn carried on with function outputs) counts with its last answer.
    """
    path = [] if reply.parent_id is None else list(Message.objects.raw(_PATH_MESSAGES_SQL, [reply.parent_id]))
    ancestors = {m.pk: m for m in path}
    latest: dict[int, tuple[str, str]] = {}
    for earlier in path:
        if earlier.role != Message.Role.ASSISTANT or earlier.reply_to_id is None:
            continue
        if earlier.reply_to_id == reply.reply_to_id or earlier.reply_to_id not in ancestors:
            continue
        if earlier.status not in (Message.Status.DONE, Message.Status.CANCELLED, Message.Status.INTERRUPTED):
            continue
        if earlier.content:
            latest[earlier.reply_to_id] = (ancestors[earlier.reply_to_id].content, earlier.content)
    return list(latest.values())


def socket_summaries(
    *, conversation_ids: Iterable[int], message_ids: Iterable[int]
) -> dict[int, tuple[int, dict[int, str]]]:
    """Return, per conversation, the newest message id of its branch on screen and the stored status of each
    of *message_ids* in it and of every reply in flight in it: what the sockets watching them compare with
    what they have told their browsers. Two queries, whatever the number of conversations.
    """
    ids = set(conversation_ids)
    summaries: dict[int, tuple[int, dict[int, str]]] = {c: (0, {}) for c in ids}
    newest = (
        Message.objects.filter(conversation_id__in=ids, on_branch=True)
        .values("conversation_id")
        .annotate(newest=Max("id"))
    )
    for row in newest:
        summaries[row["conversation_id"]] = (row["newest"], {})
    wanted = Q(pk__in=set(message_ids), conversation_id__in=ids) | Q(
        conversation_id__in=ids, status__in=Message.IN_FLIGHT
    )
    for pk, conversation_id, status in Message.objects.filter(wanted).values_list(
        "pk", "conversation_id", "status"
    ):
        summaries[conversation_id][1][pk] = status
    return summaries


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """Return *user*'s API keys, revoked and expired ones included, newest first."""
    return ApiKey.objects.filter(owner_id=user.pk).order_by("-created_at", "-id")


def api_allowed(*, user: User) -> bool:
    """Return whether *user* may use the API: yes, unless a group they are in has it switched off.

    The one place this rule lives: a group without a `GroupApiAccess` row, or with the API on, allows it;
    a single group with it off refuses it, whatever the user's other groups say.
    """
    return not GroupApiAccess.objects.filter(group__user=user.pk, api_enabled=False).exists()


def reasoning_shown(*, user: User) -> bool:
    """Return whether *user* may see the model's reasoning: yes, unless a group they are in hides it.

    The one place this rule lives (like `api_allowed`): a group without a `GroupReasoning` row shows it
    collapsed; a single group that hides it hides it, whatever the user's other groups say.
    """
    return not reasoning_hidden_among(user_ids=[user.pk])


def reasoning_hidden_among(*, user_ids: Iterable[int]) -> set[int]:
    """Return which of *user_ids* a group hides the reasoning from, in one query (the sockets' watcher)."""
    return set(
        GroupReasoning.objects.filter(
            visibility=ReasoningVisibility.HIDDEN, group__user__in=set(user_ids)
        ).values_list("group__user", flat=True)
    )


@read_once
def profile_get(*, user: User) -> Profile:
    """Return *user*'s profile: their saved settings, or the defaults (unsaved) while they never saved any."""
    return Profile.objects.filter(user_id=user.pk).first() or Profile(user_id=user.pk)


def share_list(*, user: User) -> QuerySet[Share]:
    """Return the shares *user* made, revoked ones included, newest first."""
    return Share.objects.filter(owner_id=user.pk).order_by("-created_at", "-id")


def conversation_share_list(*, conversation: Conversation) -> QuerySet[Share]:
    """Return the shares of *conversation* that can still be read, newest first."""
    return Share.objects.filter(conversation_id=conversation.pk, revoked_at__isnull=True).order_by(
        "-created_at", "-id"
    )
