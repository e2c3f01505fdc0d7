"""Django admin for the tools: the search endpoint and allowlist, and the team's functions."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from inference.tools.functions import check_parameters_schema
from inference.tools.models import Function, ToolSettings


@admin.register(ToolSettings)
class ToolSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "search_url", "python_enabled")
    filter_horizontal = ("python_groups", "browser_groups")
    fieldsets = (
        ("Browse", {"fields": ("search_url", "search_timeout_s", "fetch_allowlist", "browser_groups")}),
        ("Python", {"fields": ("python_enabled", "python_groups")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ToolSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class FunctionForm(forms.ModelForm):
    secret_value = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=True),
        help_text="Sent as the header's value; never shown to the model or the users.",
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
            "groups",
            "enabled",
        )

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


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    form = FunctionForm
    list_display = ("name", "url", "timeout_s", "enabled")
    list_filter = ("enabled", "groups")
    search_fields = ("name", "description")
    filter_horizontal = ("groups",)
