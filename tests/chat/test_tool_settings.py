"""The conversation settings offer only the tools the owner may use, and Browse says why it is off."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from inference.tools.models import Function, ToolSettings
from inference.tools.toolset import toolset_for
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db


def _function(name: str, *groups: Group) -> Function:
    function = Function.objects.create(
        name=name,
        description=f"Look up {name}.",
        parameters={"type": "object"},
        url="http://tools.internal/x",
    )
    function.groups.set(groups)
    return function


def test_the_settings_offer_python_browse_and_the_functions_of_the_users_groups(
    alice: object, alice_client: Client
) -> None:
    team, others = Group.objects.create(name="team"), Group.objects.create(name="others")
    alice.groups.add(team)  # type: ignore[attr-defined]
    _function("crm_lookup", team)
    _function("payroll", others)
    conversation = make_conversation(alice)
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'value="python"' in page and 'value="functions.crm_lookup"' in page
    assert "payroll" not in page
    # No search endpoint yet: Browse is shown switched off, with the reason.
    assert 'value="browser"' in page and "An administrator has to configure a search endpoint first." in page
    response = alice_client.post(
        f"/c/{conversation.pk}/settings/",
        {"settings-reasoning_effort": "low", "settings-enabled_tools": ["browser"]},
    )
    assert response.status_code == 400
    response = alice_client.post(
        f"/c/{conversation.pk}/settings/",
        {"settings-reasoning_effort": "low", "settings-enabled_tools": ["functions.payroll"]},
    )
    assert response.status_code == 400
    response = alice_client.post(
        f"/c/{conversation.pk}/settings/",
        {"settings-reasoning_effort": "low", "settings-enabled_tools": ["python", "functions.crm_lookup"]},
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.enabled_tools == ["functions.crm_lookup", "python"]


def test_browse_can_be_switched_on_once_a_search_endpoint_is_configured(
    alice: object, alice_client: Client
) -> None:
    ToolSettings.objects.update_or_create(pk=1, defaults={"search_url": "http://searx.internal/search"})
    conversation = make_conversation(alice)
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "configure a search endpoint" not in page
    response = alice_client.post(
        f"/c/{conversation.pk}/settings/",
        {"settings-reasoning_effort": "low", "settings-enabled_tools": ["browser"]},
    )
    assert response.status_code == 302
    assert toolset_for(conversation.__class__.objects.get(pk=conversation.pk)).browser


def test_a_tool_reserved_for_other_groups_is_neither_offered_nor_declared(
    alice: object, alice_client: Client
) -> None:
    admins = Group.objects.create(name="admins")
    row, _ = ToolSettings.objects.update_or_create(
        pk=1, defaults={"search_url": "http://searx.internal/search"}
    )
    row.python_groups.set([admins])
    row.browser_groups.set([admins])
    _function("crm_lookup", admins)
    # Switched on earlier (or written straight to the database): still not declared to the model.
    conversation = make_conversation(alice, enabled_tools=["python", "browser", "functions.crm_lookup"])
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'value="python"' not in page and 'value="browser"' not in page and "crm_lookup" not in page
    assert "No tools are available to you here." in page
    toolset = toolset_for(conversation)
    assert (toolset.python, toolset.browser, toolset.functions) == (False, False, ())


def test_a_switched_off_tool_is_not_declared_even_when_allowed(alice: object) -> None:
    team = Group.objects.create(name="team")
    alice.groups.add(team)  # type: ignore[attr-defined]
    _function("crm_lookup", team)
    conversation = make_conversation(alice, enabled_tools=["python"])
    toolset = toolset_for(conversation)
    assert (toolset.python, toolset.browser, toolset.functions) == (True, False, ())
