"""Django admin for the tools: the search endpoint and allowlist, and the team's functions."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from chat.admin import PrivateFieldsAdmin, superuser_only
from inference.tools.functions import check_parameters_schema
from inference.tools.models import Function, ToolSettings


@admin.register(ToolSettings)
class ToolSettingsAdmin(PrivateFieldsAdmin):
    list_display = ("__str__", "search_url", "python_enabled")
    filter_horizontal = ("python_groups", "browser_groups")
    fieldsets = (
        ("Browse", {"fields": ("search_url", "search_timeout_s", "fetch_allowlist", "browser_groups")}),
        ("Python", {"fields": ("python_enabled", "python_groups")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ToolSettings.objects.exists()

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> tuple[str, ...]:
        """With staff privacy on, where the browser sends users' queries is for superusers to set: staff who
        cannot read chats must not be able to point the search at a server of their own."""
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, *TOOL_DESTINATIONS) if superuser_only(request) else readonly

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# Where tools send what users wrote: with staff privacy on, only superusers set these.
TOOL_DESTINATIONS = ("search_url", "fetch_allowlist")
FUNCTION_DESTINATIONS = ("url", "secret_header")


class FunctionForm(forms.ModelForm):
    """The function's secret is write-only: the page says whether one is set, never what it is."""

    secret_value = forms.CharField(
        required=False,
        max_length=500,
        label="New secret value",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent as the header's value; never shown to the model, the users or this page. "
        "Leave empty to keep the current one.",
    )
    clear_secret = forms.BooleanField(
        required=False,
        label="Clear the secret",
        help_text="Remove the secret value (empty the header name too).",
    )

    class Meta:
        model = Function
        fields = (
            "name",
            "description",
            "parameters",
            "url",
            "timeout_s",
            "secret_header",
            "secret_value",
            "clear_secret",
            "groups",
            "enabled",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form's initial data would otherwise carry the stored secret.
        self.initial["secret_value"] = ""

    def clean_secret_value(self) -> str:
        """Return the typed secret, or the stored one when the field was left empty."""
        typed: str = self.cleaned_data.get("secret_value") or ""
        return typed or self.instance.secret_value

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        typed = self.data.get(self.add_prefix("secret_value"))
        if self.cleaned_data.get("clear_secret"):
            if typed:
                raise forms.ValidationError("Either type a new secret value or clear it, not both.")
            self.cleaned_data["secret_value"] = ""
        elif (
            not typed
            and self.instance.secret_value
            and _moves_host(self.instance.url, self.cleaned_data.get("url"))
        ):
            # Whoever edits a function cannot read its secret; pointing the function at their own server
            # must not hand it to them.
            self.add_error(
                "secret_value",
                "The secret is sent to the function's URL: type the secret value again (or clear it) "
                "when the function moves to another host.",
            )
        return cleaned

    def clean_parameters(self) -> object:
        parameters = self.cleaned_data.get("parameters")
        if isinstance(parameters, str):
            try:
                parameters = json.loads(parameters)
            except ValueError as error:
                raise forms.ValidationError(f"Not JSON: {error}") from error
        try:
            check_parameters_schema(parameters if parameters is not None else {})
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        return parameters


def _moves_host(old: str, new: str | None) -> bool:
    """Whether *new* reaches another server than *old* (scheme, host or port differ)."""
    if not old or not new:
        return False
    before, after = urlsplit(old), urlsplit(new)
    try:
        return (before.scheme, before.hostname, before.port) != (after.scheme, after.hostname, after.port)
    except ValueError:  # a port that is not a number: the URL field refuses it anyway
        return True


@admin.register(Function)
class FunctionAdmin(PrivateFieldsAdmin):
    form = FunctionForm
    list_display = ("name", "url", "timeout_s", "enabled")
    list_filter = ("enabled", "groups")
    search_fields = ("name", "description")
    filter_horizontal = ("groups",)
    readonly_fields = ("secret_status",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """With staff privacy on, only superusers add functions: a new one sends users' words somewhere."""
        return not superuser_only(request) and super().has_add_permission(request)

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> tuple[str, ...]:
        """With staff privacy on, a function's endpoint and secret are for superusers to set: staff who
        cannot read chats must not send a function's arguments, taken from chats, to a server of theirs."""
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, *FUNCTION_DESTINATIONS) if superuser_only(request) else readonly

    def get_fields(self, request: HttpRequest, obj: Function | None = None) -> tuple[str, ...]:
        """Show the secret's status; only those who may change the function and its endpoint get the fields
        to replace it.

        A viewer's page renders every field read-only from the model: the secret must not be among them.
        """
        fields: tuple[str, ...] = (
            "name", "description", "parameters", "url", "timeout_s", "secret_header", "secret_status",
        )  # fmt: skip
        if (obj is None or self.has_change_permission(request, obj)) and not superuser_only(request):
            fields += ("secret_value", "clear_secret")
        return (*fields, "groups", "enabled")

    @admin.display(description="Secret value")
    def secret_status(self, function: Function) -> str:
        return "set" if function.secret_value else "not set"
