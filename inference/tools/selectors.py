"""Reads of the tool configuration: what a user may use, and what a call needs to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

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


# The settings row's switches with the user's groups and the groups that may use each tool, in one round
# trip without the ORM's cost per query: a send's fit check and a reply's start both wait on it.
_TOOLS_SQL = """
SELECT s.search_url, s.python_enabled,
    ARRAY(SELECT group_id FROM auth_user_groups WHERE user_id = %s),
    ARRAY(SELECT group_id FROM tools_toolsettings_browser_groups WHERE toolsettings_id = s.id),
    ARRAY(SELECT group_id FROM tools_toolsettings_python_groups WHERE toolsettings_id = s.id)
FROM tools_toolsettings AS s WHERE s.id = 1
"""


@read_once
def tools_available(*, user: Any) -> AvailableTools:
    """Return what *user* may switch on (a send and a reply's start both ask)."""
    with connection.cursor() as cursor:
        cursor.execute(_TOOLS_SQL, [user.pk])
        row = cursor.fetchone()
        if row is None:  # the first use ever: create the defaults, then read as always
            tool_settings_get()
            cursor.execute(_TOOLS_SQL, [user.pk])
            row = cursor.fetchone()
    search_url, python_enabled, user_groups, browser_groups, python_groups = row
    group_ids = set(user_groups)
    browser_allowed = _group_ok(group_ids, browser_groups)
    functions = (
        tuple(Function.objects.filter(enabled=True, groups__id__in=group_ids).distinct().order_by("name"))
        if group_ids
        else ()
    )
    return AvailableTools(
        python=python_enabled and _group_ok(group_ids, python_groups),
        browser=bool(search_url) and browser_allowed,
        browser_reason="" if search_url else NO_SEARCH_REASON,
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
