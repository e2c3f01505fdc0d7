"""What admins configure for the model's tools: the search endpoint, the fetch allowlist, functions."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from inference.tools.functions import check_parameters_schema
from inference.tools.net import parse_allowlist

FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")


class ToolSettings(models.Model):
    """The one row of tool settings (edited in admin; created on first read)."""

    search_url = models.URLField(
        blank=True,
        max_length=500,
        help_text="SearXNG-compatible JSON search endpoint, e.g. http://searx.internal:8080/search "
        "(queried as ?q=...&format=json). Empty: the Browse tool cannot be enabled.",
    )
    search_timeout_s = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(60)]
    )
    fetch_allowlist = models.TextField(
        blank=True,
        help_text="Hosts or networks the browser may fetch although they are private, one per line: "
        "wiki.internal, 10.1.2.0/24, fd00:1::/64. Everything private is refused otherwise. "
        "The search endpoint itself is always allowed.",
    )
    python_enabled = models.BooleanField(default=True, help_text="Offer the Python sandbox at all.")
    python_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="Who may use Python (empty: everyone)."
    )
    browser_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="Who may use Browse (empty: everyone)."
    )

    class Meta:
        verbose_name = "tool settings"
        verbose_name_plural = "tool settings"

    def __str__(self) -> str:
        return "Tool settings"

    def clean(self) -> None:
        try:
            parse_allowlist(self.fetch_allowlist)
        except ValueError as error:
            raise ValidationError({"fetch_allowlist": str(error)}) from error


class Function(models.Model):
    """An HTTP endpoint the model may call as ``functions.<name>`` with JSON arguments."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(FUNCTION_NAME, "Letters, digits and underscores; not starting with a digit.")
        ],
    )
    description = models.TextField(help_text="What it does and when to use it: the model reads this.")
    parameters = models.JSONField(
        default=dict,
        blank=True,
        help_text='JSON schema of the arguments, e.g. {"type": "object", "properties": {"city": '
        '{"type": "string"}}, "required": ["city"]}.',
    )
    url = models.URLField(max_length=500, help_text="Receives the arguments as a JSON POST body.")
    timeout_s = models.FloatField(default=10.0, validators=[MinValueValidator(0.1), MaxValueValidator(120)])
    secret_header = models.CharField(
        max_length=100, blank=True, help_text="Optional header sent with every call, e.g. X-Api-Key."
    )
    secret_value = models.CharField(max_length=500, blank=True)
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="Who may use it (empty: nobody)."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            check_parameters_schema(self.parameters)
        except ValueError as error:
            raise ValidationError({"parameters": str(error)}) from error
        if bool(self.secret_header) != bool(self.secret_value):
            raise ValidationError({"secret_value": "Give both the header name and its value, or neither."})
