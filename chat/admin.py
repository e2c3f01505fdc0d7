"""Django admin: users and groups (with their API switch and reasoning visibility), read-only conversations,
invitations, API keys.

With staff privacy on (GPTOSS_STAFF_CAN_READ_MESSAGES unset), no admin page filters, searches or orders by
what users, the model or tools wrote: a count or an order answers yes/no questions about text the page hides.
docs/admin-roles.md says who may see and do what.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db.models import Count, F, Model, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from chat.models import ApiKey, Conversation, GroupApiAccess, GroupReasoning, Invitation, Message
from chat.services import accounts, api_keys

logger = logging.getLogger(__name__)
User = get_user_model()
HIDDEN = "(hidden: set GPTOSS_STAFF_CAN_READ_MESSAGES=true to show message contents)"

# What users, the model and tools wrote (error text may quote the model's output; notices describe a
# conversation): with staff privacy on, admin pages neither show these nor filter, search or order by them.
PRIVATE_FIELDS: dict[str, frozenset[str]] = {
    "chat.conversation": frozenset({"title", "instructions"}),
    "chat.message": frozenset({"content", "reasoning", "tool_calls", "error", "notice"}),
    "chat.profile": frozenset({"about_me", "answer_style"}),
}
# Secrets no admin page filters by, whatever the setting: a count would spell them out.
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "auth.user": frozenset({"password"}),
    "tools.function": frozenset({"secret_value"}),
    "chat.apikey": frozenset({"secret_hash"}),
}


def staff_privacy() -> bool:
    """Whether staff are kept from message contents (GPTOSS_STAFF_CAN_READ_MESSAGES unset)."""
    return not settings.GPTOSS_STAFF_CAN_READ_MESSAGES


def _fields_on_path(model: type[Model], path: str) -> Iterator[tuple[str, str]]:
    """Yield (model label, field name) for each field *path* goes through, relations followed."""
    for part in path.split(LOOKUP_SEP):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return  # a lookup or a transform: `startswith`, `year`, a JSON key
        yield model._meta.label_lower, field.name
        if field.related_model is None or isinstance(field.related_model, str):
            return
        model = field.related_model


def forbidden_field(model: type[Model], path: str) -> str | None:
    """Return the private or secret field that the lookup *path* from *model* reaches, else None."""
    for label, name in _fields_on_path(model, path):
        if name in SECRET_FIELDS.get(label, ()) or (
            staff_privacy() and name in PRIVATE_FIELDS.get(label, ())
        ):
            return f"{label}.{name}"
    return None


def _order_paths(order_field: object) -> list[str]:
    """Return the field paths an admin column's ordering (a name or an expression) sorts by."""
    if isinstance(order_field, str):
        return [order_field.removeprefix("-")]
    if hasattr(order_field, "flatten"):
        return [str(getattr(node, "name", "")) for node in order_field.flatten() if isinstance(node, F)]
    return []


def _log_refusal(request: HttpRequest, model: type[Model], what: str, path: str, forbidden: str) -> None:
    logger.warning(
        "admin: refused user %s to %s %s by %s (reaches %s)",
        request.user.pk,
        what,
        model._meta.label,
        path,
        forbidden,
    )


def _filter_path(item: Any) -> str:
    """Return the field path a `list_filter` entry filters by ("" for a SimpleListFilter class)."""
    if isinstance(item, str):
        return item
    return str(item[0]) if isinstance(item, tuple | list) else ""


class PrivateFieldsChangeList(ChangeList):
    """A change list whose `?o=` sorts by no column that reaches a private or secret field."""

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list[Any]:
        for part in str(self.params.get(ORDER_VAR, "")).split("."):
            try:
                column = self.list_display[int(part.rpartition("-")[2])]
            except (IndexError, ValueError):
                continue  # Django skips these too
            for path in _order_paths(self.get_ordering_field(column)):
                if forbidden := forbidden_field(self.model, path):
                    _log_refusal(request, self.model, "order", path, forbidden)
                    raise DisallowedModelAdminLookup(f"Ordering by {path} is not allowed")
        return super().get_ordering(request, queryset)


class PrivateFieldsAdmin(admin.ModelAdmin):
    """Refuse (400, logged) any filter or ordering that reaches a private or secret field; search none."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if forbidden := forbidden_field(self.model, lookup):
            _log_refusal(request, self.model, "filter", lookup, forbidden)
            return False  # Django answers 400 (DisallowedModelAdminLookup)
        return super().lookup_allowed(lookup, value, request)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [
            name
            for name in super().get_search_fields(request)
            if not forbidden_field(self.model, name.lstrip("^=@"))
        ]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        # A field's filter lists the values it holds: none for a private or secret field.
        return [
            item
            for item in super().get_list_filter(request)
            if not forbidden_field(self.model, _filter_path(item))
        ]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PrivateFieldsChangeList


def superuser_only(request: HttpRequest) -> bool:
    """Whether staff privacy leaves this act to superusers, and the user is not one."""
    return staff_privacy() and not request.user.is_superuser


class ReadOnlyAdmin(PrivateFieldsAdmin):
    """Staff may look, not edit: chats are written by their owners only.

    With staff privacy on, only superusers delete chats: staff cannot read what they would delete.
    """

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return not superuser_only(request) and super().has_delete_permission(request, obj)


admin.site.unregister(User)
admin.site.unregister(Group)


class GroupApiAccessInline(admin.StackedInline):
    """The group's API switch: off refuses every member's API key (403), whatever their other groups."""

    model = GroupApiAccess
    can_delete = False
    max_num = 1
    verbose_name_plural = "API access"


class GroupReasoningInline(admin.StackedInline):
    """Whether members see the model's reasoning: a group that hides it hides it, whatever the others say."""

    model = GroupReasoning
    can_delete = False
    max_num = 1
    verbose_name_plural = "Reasoning visibility"


@admin.register(Group)
class GroupAdmin(PrivateFieldsAdmin, BaseGroupAdmin):
    inlines = (GroupApiAccessInline, GroupReasoningInline)


@admin.register(User)
class UserAdmin(PrivateFieldsAdmin, BaseUserAdmin):
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
    actions = ("sign_out_everywhere",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(_conversation_count=Count("conversations"))

    # With staff privacy on, what would let staff read or destroy another user's chats is for superusers:
    # a password set by someone else is a way into that user's chats, deleting a user deletes their chats,
    # and whoever may make a superuser is one. docs/admin-roles.md lists each role's rights.

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return not superuser_only(request) and super().has_delete_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        if obj is not None and getattr(obj, "is_superuser", False) and superuser_only(request):
            return False
        return super().has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, "is_superuser") if superuser_only(request) else readonly

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        if superuser_only(request):
            logger.warning("admin: refused user %s to set the password of user %s", request.user.pk, id)
            raise PermissionDenied("Only a superuser sets another user's password while staff privacy is on.")
        return super().user_change_password(request, id, form_url)

    def has_sign_out_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    @admin.action(permissions=["sign_out"], description="Sign the selected users out everywhere")
    def sign_out_everywhere(self, request: HttpRequest, queryset: QuerySet) -> None:
        """End every session of the selected users, e.g. when an account may be compromised."""
        users = list(queryset.values_list("pk", flat=True))
        ended = accounts.user_sessions_end(user_ids=users)
        logger.info("admin: user %s signed users %s out everywhere", request.user.pk, users)
        self.message_user(
            request, f"{len(users)} users signed out everywhere ({ended} sessions ended).", messages.SUCCESS
        )

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
class InvitationAdmin(PrivateFieldsAdmin):
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


@admin.register(ApiKey)
class ApiKeyAdmin(PrivateFieldsAdmin):
    """Users' API keys: listed, and revoked by staff with the change permission; never created or read here.

    Only the prefix shows: the hash is on no page, in no filter, search or ordering (a count would spell it
    out), and the key itself is stored nowhere. Keys are made by their owners at /settings/api-keys/.
    """

    list_display = ("name", "owner", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter))
    search_fields = ("owner__username", "name", "=prefix")
    fields = ("owner", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("owner")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a key is shown only to whoever creates it: its owner

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # revoke instead: the row stays, with when it was last used

    @admin.action(permissions=["change"], description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        assert request.user.is_authenticated
        revoked = sum(api_keys.api_key_revoke(key=key, by=request.user) for key in queryset)
        self.message_user(request, f"{revoked} API keys revoked.", messages.SUCCESS)
