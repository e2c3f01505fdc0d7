"""Admins define functions and tool settings in Django admin; bad schemas are refused there."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from inference.tools.models import Function
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _post(client: Client, parameters: str, group: Group) -> object:
    return client.post(
        "/admin/tools/function/add/",
        {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": parameters,
            "url": "http://weather.internal/api",
            "timeout_s": "5",
            "secret_header": "X-Api-Key",
            "secret_value": "s3cret",
            "groups": [group.pk],
            "enabled": "on",
        },
    )


def test_an_admin_defines_a_function_with_a_valid_schema(admin_client: Client) -> None:
    team = Group.objects.create(name="team")
    assert admin_client.get("/admin/tools/function/add/").status_code == 200
    response = _post(admin_client, '{"type": "object", "properties": {"x": {"type": "nonsense"}}}', team)
    assert response.status_code == 200 and "Not a valid JSON schema" in response.content.decode()  # type: ignore[attr-defined]
    assert not Function.objects.exists()
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response = _post(admin_client, json.dumps(schema), team)
    assert response.status_code == 302  # type: ignore[attr-defined]
    function = Function.objects.get()
    assert (function.parameters, list(function.groups.all()), function.secret_value) == (
        schema,
        [team],
        "s3cret",
    )


def test_the_tool_settings_page_opens_and_refuses_a_bad_allowlist(admin_client: Client) -> None:
    assert admin_client.get("/admin/tools/toolsettings/").status_code == 200
    response = admin_client.post(
        "/admin/tools/toolsettings/add/",
        {
            "search_url": "http://searx.internal/search",
            "search_timeout_s": "10",
            "fetch_allowlist": "10.0.0.0/8\n!!",
        },
    )
    assert response.status_code == 200 and "neither a host name nor a network" in response.content.decode()
