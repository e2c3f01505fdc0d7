"""Reads of the tool configuration: what a user may use, and what a call needs to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import OuterRef

from gptoss_web.reads import read_once
from inference.tools.browser import BrowserConfig
from inference.tools.functions import Endpoint
from inference.tools.models import Function, ToolSettings
from inference.tools.net import FetchLimits, parse_allowlist

NO_SEARCH_REASON = "An administrator has to configure a search endpoint first."


@dataclass(frozen=True)
class AvailableTools:
    """The tools *user* may switch on, and why Browse cannot be when it cannot."""

    python: bool
    browser: bool
    browser_reason: str
    browser_allowed: bool
    functions: tuple[Function, ...]


def tool_settings_get() -> ToolSettings:
    """Return the one row of tool settings, creating it with the defaults on first use."""
    row, _ = ToolSettings.objects.get_or_create(pk=1)
    return row


def _group_ok(group_ids: set[int], allowed: list[int]) -> bool:
    return not allowed or bool(set(allowed) & group_ids)


def _groups(through: Any, column: str, value: Any) -> ArraySubquery:
    return ArraySubquery(through.objects.filter(**{column: value}).values("group_id"))


@read_once
def tools_available(*, user: Any) -> AvailableTools:
    """Return what *user* may switch on, read in one query (a send and a reply's start both ask)."""
    settings_row = ToolSettings.objects.annotate(
        user_groups=_groups(user.groups.through, "user_id", user.pk),
        browser_group_ids=_groups(ToolSettings.browser_groups.through, "toolsettings_id", OuterRef("pk")),
        python_group_ids=_groups(ToolSettings.python_groups.through, "toolsettings_id", OuterRef("pk")),
    )
    row = settings_row.filter(pk=1).first()
    if row is None:  # the first use ever: create the defaults, then read as always
        tool_settings_get()
        row = settings_row.get(pk=1)
    group_ids = set(row.user_groups)
    browser_allowed = _group_ok(group_ids, row.browser_group_ids)
    functions = tuple(
        Function.objects.filter(enabled=True, groups__id__in=group_ids).distinct().order_by("name")
    )
    return AvailableTools(
        python=row.python_enabled and _group_ok(group_ids, row.python_group_ids),
        browser=bool(row.search_url) and browser_allowed,
        browser_reason="" if row.search_url else NO_SEARCH_REASON,
        browser_allowed=browser_allowed,
        functions=functions,
    )


def browser_config() -> BrowserConfig:
    row = tool_settings_get()
    return BrowserConfig(
        search_url=row.search_url,
        search_timeout_s=float(row.search_timeout_s),
        allowlist=parse_allowlist(row.fetch_allowlist),
        limits=FetchLimits(
            max_bytes=settings.GPTOSS_FETCH_MAX_BYTES,
            timeout_s=settings.GPTOSS_FETCH_TIMEOUT_S,
            max_redirects=settings.GPTOSS_FETCH_MAX_REDIRECTS,
        ),
    )


def function_endpoint(*, name: str) -> Endpoint | None:
    function = Function.objects.filter(name=name, enabled=True).first()
    if function is None:
        return None
    return Endpoint(
        name=function.name,
        url=function.url,
        timeout_s=function.timeout_s,
        parameters=function.parameters or {},
        secret_header=function.secret_header,
        secret_value=function.secret_value,
    )
