"""Conversations and their messages: the truth every stream is reloaded from."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, NotRequired, TypedDict

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone


class ReasoningEffort(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Tool(models.TextChoices):
    """gpt-oss's built-in tools; admin-defined functions are named `functions.<name>`."""

    PYTHON = "python", "Python"
    BROWSER = "browser", "Browse"


class Theme(models.TextChoices):
    SYSTEM = "system", "As the system"
    LIGHT = "light", "Light"
    DARK = "dark", "Dark"


class ReasoningVisibility(models.TextChoices):
    COLLAPSED = "collapsed", "Shown, collapsed"
    HIDDEN = "hidden", "Hidden"


# An answer needs at least this many tokens (its channel header alone takes a few): a send with fewer left in
# the quota is refused, and a conversation's answer length limit is at least this.
MIN_ANSWER_TOKENS = 16
# What a conversation's own sampling may be set to (chat.forms says so in these words; the database refuses
# anything else). Temperature 0 samples the likeliest token every time; top-p 0 would allow no token at all.
TEMPERATURE_MAX = 2.0
TOP_P_MIN = 0.01


# How many conversations a user may pin: the sidebar shows them all above the paged list, so they stay few.
MAX_PINNED = 50


class Project(models.Model):
    """A folder of a user's conversations with their own defaults (docs/architecture.md, "Projects").

    *instructions* join the developer message of every reply in the project's conversations, read at each
    reply (between the user's profile instructions and the conversation's own). *model_name*,
    *reasoning_effort* and *enabled_tools* are what a conversation created in the project starts with; blank
    (an empty list for the tools) means the owner's profile default. Deleting a project never deletes its
    conversations by itself: they stay, outside any project (`Conversation.project` is SET_NULL), unless the
    user asked for them to be deleted too (chat.services.projects.project_delete).
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    instructions = models.TextField(blank=True)
    model_name = models.CharField("default model", max_length=100, blank=True)
    reasoning_effort = models.CharField(
        "default reasoning effort", max_length=6, choices=ReasoningEffort.choices, blank=True
    )
    enabled_tools = ArrayField(models.CharField(max_length=80), default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = [Lower("name"), "id"]
        constraints = [
            # One name per owner, whatever its case: "Billing" and "billing" would be one folder twice.
            models.UniqueConstraint(Lower("name"), "owner", name="project_name_unique_per_owner"),
            models.CheckConstraint(
                condition=Q(reasoning_effort__in=[*ReasoningEffort.values, ""]), name="project_effort_valid"
            ),
            models.CheckConstraint(condition=~Q(name=""), name="project_name_not_blank"),
        ]

    def __str__(self) -> str:
        # Not the name: staff may not be allowed to read what users write.
        return f"Project {self.pk}"


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    # SET_NULL: a project deleted in any way (the admin, a bulk delete) leaves its conversations, outside it.
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    # Pinned: listed above the rest of the sidebar (at most MAX_PINNED). Archived: out of the sidebar, in the
    # Archived list and in search (marked); archiving unpins.
    pinned_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    title = models.CharField(max_length=200, blank=True)
    model_name = models.CharField(max_length=100)
    reasoning_effort = models.CharField(
        max_length=6, choices=ReasoningEffort.choices, default=ReasoningEffort.MEDIUM
    )
    enabled_tools = ArrayField(models.CharField(max_length=80), default=list, blank=True)
    instructions = models.TextField(blank=True)
    # Sampling of the chat page's replies; None: gpt-oss's recommended defaults (temperature 1, top-p 1) and
    # the model's whole answer budget. The limit can only lower that budget (inference.worker.tasks).
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_answer_tokens = models.PositiveIntegerField(null=True, blank=True)
    # A conversation an API call made for itself (Chat Completions without `store`): never listed, deleted
    # once its reply is delivered; only the usage figures stay.
    ephemeral = models.BooleanField(default=False)
    # A stored chain of Responses API calls (`store`, `previous_response_id`): listed with the user's other
    # conversations, marked as coming from the API.
    from_api = models.BooleanField(default=False)
    # The last message of the branch on screen (chat.services.branches keeps it, with Message.on_branch): the
    # page, the exports and the next reply's prompt follow it, on every device. None: no message yet.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent"),
            # The sidebar's pages (chat.selectors.sidebar_page): the keyset (updated_at, id) of the listed
            # ones, newest first, read from the index in order, never counted or offset.
            models.Index(
                "owner",
                F("updated_at").desc(),
                F("id").desc(),
                condition=Q(ephemeral=False, archived_at__isnull=True, pinned_at__isnull=True),
                name="conversation_sidebar",
            ),
            models.Index(
                "owner",
                F("updated_at").desc(),
                F("id").desc(),
                condition=Q(ephemeral=False, archived_at__isnull=False),
                name="conversation_archived",
            ),
            models.Index(
                "owner",
                F("updated_at").desc(),
                condition=Q(ephemeral=False, pinned_at__isnull=False),
                name="conversation_pinned",
            ),
            models.Index(
                "project",
                F("updated_at").desc(),
                F("id").desc(),
                condition=Q(project__isnull=False),
                name="conversation_project_recent",
            ),
            # Search's set of the conversations a user may read (chat/search.py), read from the index alone.
            models.Index(
                fields=["owner", "id"], condition=Q(ephemeral=False), name="conversation_owner_visible"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(reasoning_effort__in=ReasoningEffort.values), name="conversation_effort_valid"
            ),
            models.CheckConstraint(
                condition=Q(pinned_at__isnull=True) | Q(archived_at__isnull=True),
                name="conversation_pinned_or_archived",
            ),
            models.CheckConstraint(
                condition=Q(temperature__isnull=True)
                | Q(temperature__gte=0, temperature__lte=TEMPERATURE_MAX),
                name="conversation_temperature_valid",
            ),
            models.CheckConstraint(
                condition=Q(top_p__isnull=True) | Q(top_p__gte=TOP_P_MIN, top_p__lte=1),
                name="conversation_top_p_valid",
            ),
            models.CheckConstraint(
                condition=Q(max_answer_tokens__isnull=True) | Q(max_answer_tokens__gte=MIN_ANSWER_TOKENS),
                name="conversation_answer_limit_valid",
            ),
        ]

    def __str__(self) -> str:
        # Not the title: titles come from message text, which staff may not be allowed to read.
        return f"Conversation {self.pk}"

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        STREAMING = "streaming", "Streaming"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    IN_FLIGHT = (Status.QUEUED, Status.STREAMING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=9, choices=Role.choices)
    status = models.CharField(max_length=11, choices=Status.choices, default=Status.DONE)
    # The user message an assistant reply answers.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
    )
    # The message before this one on its branch: a question's parent is the answer it follows (None for a
    # conversation's first question), an answer's is its question (or, for an API turn carried on with
    # function outputs, the answer it carries on). Edits and regenerations are siblings: children of one
    # parent, each the start of a branch.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    # [{"recipient", "channel", "arguments", "result", "error", "started_at", "finished_at"}]
    tool_calls = models.JSONField(default=list, blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    reasoning_effort = models.CharField(max_length=6, choices=ReasoningEffort.choices, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    answer_tokens = models.PositiveIntegerField(default=0)
    queue_wait_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    # Tokens this reply holds against its owner's daily quota, from queueing until its real count is recorded
    # (0 after that): at most the model's answer budget, and the GPU worker generates no more than this.
    reserved_tokens = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # False when a failed reply's Retry could only fail again (the message cannot fit the model's context,
    # the model is not served): the page offers no Retry.
    retryable = models.BooleanField(default=True)
    # Something the user should know about this reply, e.g. that older turns were left out of the prompt.
    notice = models.CharField(max_length=300, blank=True)
    # The Celery task and worker that own a streaming message, for the reaper and the logs.
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # Sequence number of the last stream event folded into content, reasoning and tool_calls
    # (docs/protocol.md).
    stream_seq = models.PositiveIntegerField(default=0)
    # Whether this message is on the branch on screen (the path from the root to the conversation's
    # current_leaf): the tree's answer kept on each row, in the same transaction that moves the leaf
    # (chat.services.branches), so that search reads it from the row it matched instead of walking a tree.
    on_branch = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_order"),
            models.Index(
                fields=["status"], name="message_in_flight", condition=Q(status__in=["queued", "streaming"])
            ),
            models.Index(
                fields=["conversation"], name="message_reserved", condition=Q(reserved_tokens__gt=0)
            ),
        ]
        constraints = [
            # At most one reply in flight per conversation, whatever the number of web processes.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status__in=["queued", "streaming"]),
                name="message_one_generation_in_flight",
            ),
            models.CheckConstraint(
                condition=Q(role="assistant") | Q(status="done"), name="message_user_is_done"
            ),
            models.CheckConstraint(condition=Q(role__in=["user", "assistant"]), name="message_role_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "streaming", "done", "cancelled", "failed", "interrupted"]),
                name="message_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk} ({self.status})"

    @property
    def in_flight(self) -> bool:
        return self.status in self.IN_FLIGHT


def _share_token() -> str:
    return secrets.token_urlsafe(16)


class Share(models.Model):
    """A read-only snapshot of a conversation, readable by every signed-in user who has its link.

    The snapshot is the conversation as it was when shared, in this app's own JSON
    (chat/interchange/gptoss.py): later messages, edits and settings do not change it. Revoking it empties
    the snapshot; the row stays so that the owner's list says it was revoked. Deleting the conversation
    deletes its shares.
    """

    token = models.CharField(max_length=32, unique=True, default=_share_token, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shares")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    title = models.CharField(max_length=200, blank=True)
    snapshot = models.JSONField(default=dict, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_recent")]

    def __str__(self) -> str:
        return f"Share {self.pk}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"


def _invitation_token() -> str:
    return secrets.token_urlsafe(24)


def _invitation_expiry() -> object:
    return timezone.now() + timedelta(days=7)


class Invitation(models.Model):
    """A single-use sign-up link an admin hands out (only when GPTOSS_INVITATIONS is on)."""

    token = models.CharField(max_length=64, unique=True, default=_invitation_token, editable=False)
    email = models.EmailField(blank=True, help_text="Who it is for (informational).")
    groups = models.ManyToManyField("auth.Group", blank=True, help_text="Groups the new user joins.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(default=_invitation_expiry)
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitation"
    )
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Invitation {self.email or self.pk}"

    @property
    def usable(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()


class ApiKey(models.Model):
    """A user's personal key for the OpenAI-compatible API under /v1/: `gok_<8 hex>_<43 url-safe chars>`.

    Only `prefix` (which names the key on pages and finds its row) and a hash of the whole key are stored;
    the key itself is shown once, when it is created. The hash is a plain SHA-256: the secret is 256 random
    bits, so there is nothing to guess and a slow password hash would only cost every API request its time.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the owner uses it for.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)  # SHA-256 hex of the whole key
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Updated at most once a minute (chat/services/api_keys.py), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"
        indexes = [models.Index(fields=["owner", "-created_at"], name="apikey_owner_recent")]

    def __str__(self) -> str:
        return f"API key {self.prefix}"

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def usable(self) -> bool:
        return self.revoked_at is None and not self.expired


class GroupApiAccess(models.Model):
    """Whether the members of a group may use the API: admins switch it off per group (on by default).

    Not a field of `inference.Quota`, although that is per group too: a quota is a limit where a user's own
    row wins over their groups' (so a user-level quota would undo a group's switch), and a group with no
    limits should not need a quota row to carry a switch. This one is a refusal any group can impose:
    a user may use the API unless a group they are in has it switched off (`chat.selectors.api_allowed`).
    """

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="api_access")
    api_enabled = models.BooleanField(
        "API enabled",
        default=True,
        help_text="Members may use the API with their keys. Off: every member's key is refused (403), "
        "whatever their other groups say.",
    )

    class Meta:
        verbose_name = "API access"
        verbose_name_plural = "API access"

    def __str__(self) -> str:
        return f"API access of {self.group}"


class GroupReasoning(models.Model):
    """Whether the members of a group see the model's reasoning: shown collapsed (the default) or hidden.

    Hidden is a refusal any group can impose, like `GroupApiAccess`: a user in several groups sees reasoning
    unless one of them hides it (`chat.selectors.reasoning_shown`). Hidden reasoning never reaches their
    browser: it is left out of the page and of every socket frame, live or stored. It is still generated and
    stored (the model needs it while a turn runs tool calls), and tool calls stay visible.
    """

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="reasoning")
    visibility = models.CharField(
        "reasoning",
        max_length=9,
        choices=ReasoningVisibility.choices,
        default=ReasoningVisibility.COLLAPSED,
        help_text="Hidden: members never see the model's reasoning, on the page or live, whatever their "
        "other groups say. Shown: a folded “Reasoning” section above each answer.",
    )

    class Meta:
        verbose_name = "reasoning visibility"
        verbose_name_plural = "reasoning visibility"
        constraints = [
            models.CheckConstraint(
                condition=Q(visibility__in=ReasoningVisibility.values), name="groupreasoning_visibility_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Reasoning visibility of {self.group}"


class Profile(models.Model):
    """A user's own settings: what the model is told about them and how to answer (in every conversation's
    prompt, docs/architecture.md), what a new conversation starts with, the colour scheme of the pages, and
    whether a finished reply notifies them.

    A user without a row has the defaults (`chat.selectors.profile_get`); the row is written the first time
    they save their profile.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="profile"
    )
    about_me = models.TextField("about you", blank=True)
    answer_style = models.TextField("how to answer", blank=True)
    # For new conversations: "" is the site's default model, and that model's default effort.
    model_name = models.CharField("default model", max_length=100, blank=True)
    reasoning_effort = models.CharField(
        "default reasoning effort", max_length=6, choices=ReasoningEffort.choices, blank=True
    )
    enabled_tools = ArrayField(models.CharField(max_length=80), default=list, blank=True)
    theme = models.CharField(max_length=6, choices=Theme.choices, default=Theme.SYSTEM)
    notifications = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(theme__in=Theme.values), name="profile_theme_valid"),
            models.CheckConstraint(
                condition=Q(reasoning_effort__in=[*ReasoningEffort.values, ""]), name="profile_effort_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Profile of user {self.user_id}"

    @property
    def color_scheme(self) -> str:
        """Return the schemes the pages declare (`<meta name="color-scheme">`): what form controls follow."""
        return {Theme.LIGHT: "light", Theme.DARK: "dark"}.get(Theme(self.theme), "light dark")

    @property
    def dark_media(self) -> str:
        """Return the media query under which the dark palette (static/css/dark.css) applies: always, never,
        or when the system prefers dark. Set on its <link> by the server, so the page never flashes."""
        always = {Theme.LIGHT: "not all", Theme.DARK: "all"}
        return always.get(Theme(self.theme), "(prefers-color-scheme: dark)")


class ApiTurn(TypedDict):
    """A finished turn of an API request's messages: the user's text and the final answer it got."""

    user: str
    final: str


class ApiToolStep(TypedDict):
    """A client function call of the turn in progress and the result the client sent back."""

    call_id: str
    name: str
    namespace: NotRequired[str]  # the harmony namespace of the function (absent: "functions")
    arguments: str
    analysis: str  # the reasoning the model wrote before the call (kept in the prompt while the turn runs)
    result: str


class ApiFunction(TypedDict):
    name: str
    description: str
    parameters: dict[str, Any]
    namespace: NotRequired[str]  # a Responses `namespace` tool's name (absent: "functions")
    namespace_description: NotRequired[str]


class ApiPrompt(TypedDict):
    """What an API request asks the model, in harmony's terms (rendered by the GPU worker)."""

    instructions: str
    history: list[ApiTurn]
    user: str
    steps: list[ApiToolStep]
    # The client's functions: a call to one ends the reply, for the client to run.
    functions: list[ApiFunction]
    # The instructions that came as input items (developer/system messages), part of *instructions*: a
    # response chained to this one (previous_response_id) keeps them, but not the request's `instructions`.
    carried: NotRequired[str]
    # The server's own tools the request asked for and may use ("browser", "python"): run by the worker.
    builtins: NotRequired[list[str]]


class ApiJsonFormat(TypedDict):
    """A `response_format` that asks for JSON: any object (`json_object`) or one valid for a schema."""

    name: str  # the schema's name; "" for json_object
    schema: dict[str, Any] | None  # None: any JSON object


class ApiForcedCall(TypedDict):
    """A `tool_choice` of `required` or a named function: the reply must call one of *recipients*."""

    recipients: list[str]  # namespace.name
    schema: dict[str, Any] | None  # the arguments' JSON Schema (None: any object, for a choice of several)


class ApiSampling(TypedDict):
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]  # the answer ends before the first of these
    json: NotRequired[ApiJsonFormat | None]  # the answer is constrained to this JSON (absent: free text)
    # The request's prompt_cache_key: which of the user's cached prompts the engine should reuse ("": one
    # per user).
    cache_key: NotRequired[str]
    call: NotRequired[ApiForcedCall | None]  # the reply must be a call to one of the client's functions


class ApiRequest(models.Model):
    """The OpenAI-compatible API's request behind a reply: its prompt and sampling, read by the GPU worker.

    The reply waits in the same queue as the chat page's, under the same quota; only its prompt comes from
    the request instead of the conversation's history.
    """

    class Kind(models.TextChoices):
        CHAT_COMPLETIONS = "chat.completions", "Chat Completions"
        RESPONSES = "responses", "Responses"

    reply = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="api_request")
    kind = models.CharField(max_length=40, choices=Kind.choices)
    prompt = models.JSONField()
    sampling = models.JSONField()
    # A Responses API call's public id (`resp_...`), and what its response object echoes back (instructions,
    # tools, tool_choice, store, background, ...: chat.api.responses).
    response_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    options = models.JSONField(default=dict, blank=True)
    # Why the reply ended, in OpenAI's words (stop, length, tool_calls), set with the reply's final write.
    finish_reason = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "API request"

    def __str__(self) -> str:
        return f"API request {self.pk} ({self.kind})"
