"""Forms: parse and validate what users type; views hand the cleaned data to services."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.utils import timezone

from chat.errors import ChatError
from chat.interchange.files import size_check
from chat.interchange.records import Refused
from chat.models import Conversation, ReasoningEffort, Tool
from chat.services.messages import validate_message_text
from inference.selectors import served_model_list
from inference.tools.selectors import AvailableTools, tools_available


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200, required=False, strip=True)


class ToolCheckboxes(forms.CheckboxSelectMultiple):
    """Checkboxes where some tools are shown but cannot be switched on, with the reason as their title."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unavailable: dict[str, str] = {}
        self.descriptions: dict[str, str] = {}

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        if str(value) in self.unavailable:
            option["attrs"] = {**option["attrs"], "disabled": True, "title": self.unavailable[str(value)]}
            option["reason"] = self.unavailable[str(value)]
        elif str(value) in self.descriptions:
            option["attrs"] = {**option["attrs"], "title": self.descriptions[str(value)]}
        return option


class SettingsForm(forms.Form):
    model_name = forms.ChoiceField(label="Model", choices=[], required=False)  # blank: keep the model
    reasoning_effort = forms.ChoiceField(choices=ReasoningEffort.choices, widget=forms.RadioSelect)
    # Values "python", "browser", "functions.<name>"; for_conversation offers what the owner may use.
    enabled_tools = forms.MultipleChoiceField(
        choices=Tool.choices, required=False, widget=ToolCheckboxes, label="Tools"
    )
    instructions = forms.CharField(
        required=False,
        max_length=8000,
        widget=forms.Textarea(
            attrs={"rows": 4, "placeholder": "How should the assistant answer in this chat?"}
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unavailable_tools: set[str] = set()

    @classmethod
    def for_conversation(cls, conversation: Conversation, data: Any = None) -> SettingsForm:
        initial = {
            "model_name": conversation.model_name,
            "reasoning_effort": conversation.reasoning_effort,
            "enabled_tools": conversation.enabled_tools,
            "instructions": conversation.instructions,
        }
        form = cls(data=data, initial=initial, prefix="settings")
        field = form.fields["model_name"]
        assert isinstance(field, forms.ChoiceField)
        # Only the models the owner may use (enabled, and in one of their groups) can be chosen.
        field.choices = [(m.name, m.display_name) for m in served_model_list(user=conversation.owner)]
        form._offer_tools(tools_available(user=conversation.owner))
        return form

    def _offer_tools(self, available: AvailableTools) -> None:
        """Offer only the tools the owner may use; show Browse switched off while it cannot work."""
        field = self.fields["enabled_tools"]
        assert isinstance(field, forms.MultipleChoiceField) and isinstance(field.widget, ToolCheckboxes)
        shown: list[tuple[str, str]] = []
        unavailable: dict[str, str] = {}
        if available.python:
            shown.append((Tool.PYTHON.value, Tool.PYTHON.label))
        if available.browser_allowed:
            shown.append((Tool.BROWSER.value, Tool.BROWSER.label))
            if not available.browser:
                unavailable[Tool.BROWSER.value] = available.browser_reason
        shown += [(f"functions.{f.name}", f.name) for f in available.functions]
        field.choices = shown
        # New dicts, not updates: a form's widgets are shallow copies of the class's.
        field.widget.choices = shown
        field.widget.unavailable = unavailable
        field.widget.descriptions = {f"functions.{f.name}": f.description for f in available.functions}
        self._unavailable_tools = set(unavailable)

    def clean_enabled_tools(self) -> list[str]:
        tools: list[str] = self.cleaned_data.get("enabled_tools") or []
        refused = [t for t in tools if t in self._unavailable_tools]
        if refused:
            raise forms.ValidationError(f"{refused[0]} cannot be switched on in this conversation.")
        return tools


class ImportForm(forms.Form):
    file = forms.FileField(
        label="File",
        allow_empty_file=False,
        error_messages={"required": "Choose a file to import.", "empty": "The file is empty."},
        widget=forms.ClearableFileInput(attrs={"accept": ".json,.zip,application/json,application/zip"}),
    )

    def clean_file(self) -> Any:
        """Refuse a file over the size cap before it is read (chat/interchange/records.py)."""
        upload = self.cleaned_data["file"]
        try:
            size_check(upload.size, upload.name)
        except Refused as error:
            raise forms.ValidationError(str(error)) from None
        return upload


class MessageForm(forms.Form):
    text = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": "Message gpt-oss", "autofocus": True}),
        error_messages={"required": "Type a message first."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        text = self.fields["text"]
        assert isinstance(text, forms.CharField)
        text.widget.attrs["maxlength"] = settings.GPTOSS_MAX_MESSAGE_CHARS
        text.validators = []  # clean_text checks it as the socket does, with the same words

    def clean_text(self) -> str:
        try:
            return validate_message_text(self.cleaned_data["text"])
        except ChatError as error:
            raise forms.ValidationError(str(error)) from None


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        strip=True,
        error_messages={"required": "Give the key a name, e.g. the program that will use it."},
        widget=forms.TextInput(attrs={"placeholder": "e.g. Laptop scripts", "autocomplete": "off"}),
    )
    expires_in_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=3650,
        widget=forms.NumberInput(attrs={"placeholder": "Never", "inputmode": "numeric"}),
    )

    def expires_at(self) -> datetime | None:
        """Return when the key expires (None: never), counted from now."""
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


class InvitationSignupForm(forms.Form):
    username = forms.CharField(max_length=150)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)

    def clean_username(self) -> str:
        # As the account stores it (NFKC: a full-width "root" is "root"), with the characters it may use.
        user_model = get_user_model()
        username: str = user_model.normalize_username(self.cleaned_data["username"])
        for validator in user_model._meta.get_field("username").validators:
            validator(username)
        if user_model.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("That username is taken.")
        return username

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        elif data.get("password1"):
            user = get_user_model()(username=data.get("username", ""))
            try:
                validate_password(data["password1"], user)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data
