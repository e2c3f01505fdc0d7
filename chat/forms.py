"""Forms: parse and validate what users type; views hand the cleaned data to services."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.utils import timezone

from chat.errors import ChatError
from chat.interchange.files import size_check
from chat.interchange.records import Refused
from chat.models import (
    MIN_ANSWER_TOKENS,
    TEMPERATURE_MAX,
    TOP_P_MIN,
    Conversation,
    Profile,
    ReasoningEffort,
    Theme,
    Tool,
)
from chat.services.messages import validate_message_text
from inference.quotas import answer_budget
from inference.selectors import default_model_name, served_model_list
from inference.tools.selectors import AvailableTools, tools_available

INSTRUCTIONS_MAX_CHARS = 8000


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


class ToolChoiceForm(forms.Form):
    """A form with an `enabled_tools` field that offers only the tools its user may switch on."""

    # Values "python", "browser", "functions.<name>"; offer_tools sets what the user may use.
    enabled_tools = forms.MultipleChoiceField(
        choices=Tool.choices, required=False, widget=ToolCheckboxes, label="Tools"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unavailable_tools: set[str] = set()

    def offer_tools(self, available: AvailableTools) -> None:
        """Offer only the tools the user may use; show Browse switched off while it cannot work."""
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
            raise forms.ValidationError(f"{refused[0]} cannot be switched on now.")
        return tools


def _number_input(*, step: str, low: float, high: float | None, placeholder: str) -> forms.NumberInput:
    attrs: dict[str, Any] = {"step": step, "min": low, "placeholder": placeholder, "inputmode": "decimal"}
    if high is not None:
        attrs["max"] = high
    return forms.NumberInput(attrs=attrs)


def _in_range(value: float | None, *, name: str, low: float, high: float, unit: str = "") -> None:
    """Raise ValidationError naming the field *name* and its range when *value* lies outside it."""
    if value is not None and not low <= value <= high:
        raise forms.ValidationError(
            f"{name} must be between {low:g} and {high:,g}{unit}; leave it blank for the default."
        )


class SettingsForm(ToolChoiceForm):
    """A conversation's settings (the Settings popover): model, effort, tools, instructions, sampling."""

    model_name = forms.ChoiceField(label="Model", choices=[], required=False)  # blank: keep the model
    reasoning_effort = forms.ChoiceField(choices=ReasoningEffort.choices, widget=forms.RadioSelect)
    instructions = forms.CharField(
        required=False,
        max_length=INSTRUCTIONS_MAX_CHARS,
        widget=forms.Textarea(
            attrs={"rows": 4, "placeholder": "How should the assistant answer in this chat?"}
        ),
    )
    # Blank: gpt-oss's recommended sampling and the model's whole answer budget. The ranges are checked in
    # clean_*, so that each error names its field and range (Django's own words name neither).
    temperature = forms.FloatField(
        required=False,
        error_messages={"invalid": "Temperature must be a number, e.g. 0.7."},
        widget=_number_input(step="0.01", low=0, high=TEMPERATURE_MAX, placeholder="1"),
        help_text=f"0 to {TEMPERATURE_MAX:g}; lower is more focused, 0 always picks the likeliest word.",
    )
    top_p = forms.FloatField(
        label="Top-p",
        required=False,
        error_messages={"invalid": "Top-p must be a number, e.g. 0.9."},
        widget=_number_input(step="0.01", low=TOP_P_MIN, high=1, placeholder="1"),
        help_text=f"{TOP_P_MIN:g} to 1; only the likeliest words that add up to this share are kept.",
    )
    max_answer_tokens = forms.IntegerField(
        label="Answer length limit",
        required=False,
        error_messages={"invalid": "Answer length limit must be a whole number of tokens."},
        widget=_number_input(step="1", low=MIN_ANSWER_TOKENS, high=None, placeholder="Model's limit"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conversation: Conversation | None = None

    @classmethod
    def for_conversation(cls, conversation: Conversation, data: Any = None) -> SettingsForm:
        initial = {
            "model_name": conversation.model_name,
            "reasoning_effort": conversation.reasoning_effort,
            "enabled_tools": conversation.enabled_tools,
            "instructions": conversation.instructions,
            "temperature": conversation.temperature,
            "top_p": conversation.top_p,
            "max_answer_tokens": conversation.max_answer_tokens,
        }
        form = cls(data=data, initial=initial, prefix="settings")
        form.conversation = conversation
        field = form.fields["model_name"]
        assert isinstance(field, forms.ChoiceField)
        # Only the models the owner may use (enabled, and in one of their groups) can be chosen.
        field.choices = [(m.name, m.display_name) for m in served_model_list(user=conversation.owner)]
        form.offer_tools(tools_available(user=conversation.owner))
        budget = answer_budget(model_name=conversation.model_name, limit=None)
        limit = form.fields["max_answer_tokens"]
        limit.widget.attrs["max"] = budget
        limit.help_text = (
            f"{MIN_ANSWER_TOKENS} to {budget:,} tokens, reasoning included; it can only lower the model's "
            f"own limit of {budget:,}."
        )
        return form

    def clean_temperature(self) -> float | None:
        value: float | None = self.cleaned_data.get("temperature")
        _in_range(value, name="Temperature", low=0, high=TEMPERATURE_MAX)
        return value

    def clean_top_p(self) -> float | None:
        value: float | None = self.cleaned_data.get("top_p")
        _in_range(value, name="Top-p", low=TOP_P_MIN, high=1)
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        limit = data.get("max_answer_tokens")
        if limit is not None and self.conversation is not None:
            # Against the model chosen in this same form: a limit can only lower that model's budget.
            model_name = data.get("model_name") or self.conversation.model_name
            budget = answer_budget(model_name=model_name, limit=None)
            try:
                _in_range(
                    limit, name="Answer length limit", low=MIN_ANSWER_TOKENS, high=budget, unit=" tokens"
                )
            except forms.ValidationError as error:
                self.add_error("max_answer_tokens", error)
        return data


class ProfileForm(ToolChoiceForm):
    """A user's profile page: custom instructions, defaults for new conversations, theme, notifications."""

    about_me = forms.CharField(
        label="About you",
        required=False,
        max_length=INSTRUCTIONS_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "e.g. I maintain our billing service in Go."}),
        help_text="What the assistant should know about you, in every conversation.",
    )
    answer_style = forms.CharField(
        label="How to answer",
        required=False,
        max_length=INSTRUCTIONS_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "e.g. Be brief. Use metric units."}),
        help_text="How the assistant should answer you, in every conversation; a conversation's own "
        "instructions come after these and win where they disagree.",
    )
    model_name = forms.ChoiceField(label="Model", choices=[], required=False)
    reasoning_effort = forms.ChoiceField(
        choices=[("", "Default"), *ReasoningEffort.choices], required=False, widget=forms.RadioSelect
    )
    theme = forms.ChoiceField(choices=Theme.choices, widget=forms.RadioSelect)
    notifications = forms.BooleanField(
        label="Notify me when an answer is ready while I look at another tab", required=False
    )

    @classmethod
    def for_user(cls, user: User, profile: Profile, data: Any = None) -> ProfileForm:
        initial = {
            "about_me": profile.about_me,
            "answer_style": profile.answer_style,
            "model_name": profile.model_name,
            "reasoning_effort": profile.reasoning_effort,
            "enabled_tools": profile.enabled_tools,
            "theme": profile.theme,
            "notifications": profile.notifications,
        }
        form = cls(data=data, initial=initial)
        field = form.fields["model_name"]
        assert isinstance(field, forms.ChoiceField)
        site_default = default_model_name(user=user)
        field.choices = [
            ("", f"Site default ({site_default})"),
            *((m.name, m.display_name) for m in served_model_list(user=user)),
        ]
        form.offer_tools(tools_available(user=user))
        return form


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


class SearchForm(forms.Form):
    """What the search page and the search palette send: the words, and whether to search reasoning too."""

    q = forms.CharField(
        label="Search",
        max_length=200,
        required=False,
        strip=True,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Search your conversations", "autocomplete": "off"}
        ),
    )
    reasoning = forms.BooleanField(label="Include reasoning", required=False)

    def query(self) -> tuple[str, bool]:
        """Return (words, include reasoning); an invalid form (words too long) searches for nothing."""
        if not self.is_valid():
            return "", False
        return self.cleaned_data["q"], self.cleaned_data["reasoning"]
