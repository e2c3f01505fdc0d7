"""Django admin: the model registry, quotas, and usage per user and day (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.admin import PrivateFieldsAdmin
from inference.models import Quota, ServedModel, UsageDay
from inference.serving import withdrawn_check


@admin.register(ServedModel)
class ServedModelAdmin(PrivateFieldsAdmin):
    list_display = (
        "name", "enabled", "source", "context", "slots", "n_gpu_layers", "n_cpu_moe", "cpu_moe", "kv_type",
        "shown_queue", "shown_groups", "position",
    )  # fmt: skip
    list_editable = ("enabled", "position")
    list_filter = ("enabled", "source")
    filter_horizontal = ("groups",)
    fieldsets = (
        (None, {"fields": ("name", "label", "enabled", "position", "source", "model_path")}),
        (
            "Context and slots",
            {"fields": ("context", "slots", "max_answer_tokens", "default_reasoning_effort")},
        ),
        (
            "Offload (where the weights live)",
            {
                "fields": ("n_gpu_layers", "n_cpu_moe", "cpu_moe", "kv_type", "n_ubatch"),
                "description": "Workers read these when they start: restart them after a change.",
            },
        ),
        ("Serving and access", {"fields": ("queue", "groups")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("groups")

    # A model disabled, renamed or deleted here: the replies queued for it fail at once, saying why.
    def save_model(self, request: HttpRequest, obj: ServedModel, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        withdrawn_check()

    def delete_model(self, request: HttpRequest, obj: ServedModel) -> None:
        super().delete_model(request, obj)
        withdrawn_check()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        withdrawn_check()

    @admin.display(description="Queue")
    def shown_queue(self, model: ServedModel) -> str:
        return model.queue_name()

    @admin.display(description="Groups")
    def shown_groups(self, model: ServedModel) -> str:
        return ", ".join(g.name for g in model.groups.all()) or "everyone"


@admin.register(Quota)
class QuotaAdmin(PrivateFieldsAdmin):
    list_display = ("__str__", "user", "group", "daily_tokens", "max_in_flight")
    autocomplete_fields = ("user",)
    list_select_related = ("user", "group")


@admin.register(UsageDay)
class UsageDayAdmin(PrivateFieldsAdmin):
    list_display = (
        "day", "user", "model_name", "source", "generations", "prompt_tokens", "reasoning_tokens",
        "answer_tokens", "shown_gpu_seconds",
    )  # fmt: skip
    list_filter = ("day", "model_name", "source")
    search_fields = ("user__username",)
    date_hierarchy = "day"
    list_select_related = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="GPU-seconds", ordering="gpu_seconds")
    def shown_gpu_seconds(self, usage: UsageDay) -> str:
        return f"{usage.gpu_seconds:,.1f}"
