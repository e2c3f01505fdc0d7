"""Django admin: users and groups, read-only conversations, invitations."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chat.models import Conversation, Invitation, Message

User = get_user_model()
HIDDEN = "(hidden: set GPTOSS_STAFF_CAN_READ_MESSAGES=true to show message contents)"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Staff may look, not edit: chats are written by their owners only."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = (
        "username",
        "email",
        "is_active",
        "is_staff",
        "last_login",
        "conversation_count",
        "date_joined",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(_conversation_count=Count("conversations"))

    @admin.display(description="Conversations", ordering="_conversation_count")
    def conversation_count(self, user: object) -> int:
        return int(getattr(user, "_conversation_count", 0))


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("shown_title", "owner", "model_name", "reasoning_effort", "message_count", "updated_at")
    list_filter = ("model_name", "reasoning_effort")
    search_fields = ("owner__username",)
    fields = (
        "owner",
        "shown_title",
        "model_name",
        "reasoning_effort",
        "enabled_tools",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super().get_queryset(request).select_related("owner").annotate(_message_count=Count("messages"))
        )

    @admin.display(description="Title")
    def shown_title(self, conversation: Conversation) -> str:
        return conversation.display_title if settings.GPTOSS_STAFF_CAN_READ_MESSAGES else "(hidden)"

    @admin.display(description="Messages", ordering="_message_count")
    def message_count(self, conversation: Conversation) -> int:
        return int(getattr(conversation, "_message_count", 0))


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "conversation_id",
        "owner",
        "role",
        "status",
        "model_name",
        "answer_tokens",
        "created_at",
    )
    list_filter = ("status", "role", "model_name")
    search_fields = ("conversation__owner__username", "task_id")
    readonly_fields = (
        "conversation", "role", "status", "shown_content", "shown_reasoning", "model_name",
        "reasoning_effort",
        "prompt_tokens", "reasoning_tokens", "answer_tokens", "queue_wait_ms", "ttft_ms", "tokens_per_second",
        "error", "task_id", "worker", "created_at", "started_at", "finished_at",
    )  # fmt: skip
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("conversation__owner")

    @admin.display(description="Owner")
    def owner(self, message: Message) -> str:
        return str(message.conversation.owner)

    @admin.display(description="Content")
    def shown_content(self, message: Message) -> str:
        return message.content if settings.GPTOSS_STAFF_CAN_READ_MESSAGES else HIDDEN

    @admin.display(description="Reasoning")
    def shown_reasoning(self, message: Message) -> str:
        return message.reasoning if settings.GPTOSS_STAFF_CAN_READ_MESSAGES else HIDDEN


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "created_at", "expires_at", "used_by", "link")
    readonly_fields = ("link", "created_by", "created_at", "used_by", "used_at")
    fields = ("email", "groups", "expires_at", "link", "created_by", "created_at", "used_by", "used_at")
    filter_horizontal = ("groups",)

    def save_model(self, request: HttpRequest, obj: Invitation, form: object, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    @admin.display(description="Sign-up link")
    def link(self, invitation: Invitation) -> str:
        if not invitation.pk:
            return "(shown after saving)"
        if not settings.GPTOSS_INVITATIONS:
            return "Invitations are off: set GPTOSS_INVITATIONS=true"
        return format_html("<code>{}</code>", reverse("chat:invitation_accept", args=[invitation.token]))
