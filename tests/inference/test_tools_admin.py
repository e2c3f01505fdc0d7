"""Admins define functions and tool settings in Django admin; bad schemas are refused there."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
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


SECRET = "s3cret-Value-that-must-never-reach-a-browser"


def _function_with_secret(group: Group) -> Function:
    function = Function.objects.create(
        name="crm_lookup",
        description="Look a customer up.",
        url="http://crm.internal/api",
        secret_header="X-Api-Key",
        secret_value=SECRET,
    )
    function.groups.set([group])
    return function


def _edit(client: Client, function: Function, **changes: str) -> Any:
    form = {
        "name": function.name,
        "description": function.description,
        "parameters": "{}",
        "url": function.url,
        "timeout_s": "10",
        "secret_header": function.secret_header,
        "secret_value": "",
        "groups": [str(g.pk) for g in function.groups.all()],
        "enabled": "on",
        **changes,
    }
    return client.post(f"/admin/tools/function/{function.pk}/change/", form)


def test_a_functions_secret_is_never_sent_back_to_the_browser(admin_client: Client) -> None:
    function = _function_with_secret(Group.objects.create(name="sales"))
    page = admin_client.get(f"/admin/tools/function/{function.pk}/change/").content.decode()
    assert SECRET not in page
    assert "set" in page and 'name="secret_value"' in page and 'name="clear_secret"' in page
    # A form sent back with an error (a bad schema) does not echo a newly typed secret either.
    bad_schema = '{"type": "object", "properties": {"x": {"type": "nonsense"}}}'
    again = _edit(admin_client, function, parameters=bad_schema, secret_value="typed-new-secret-9876")
    assert again.status_code == 200 and "Not a valid JSON schema" in again.content.decode()
    assert "typed-new-secret-9876" not in again.content.decode() and SECRET not in again.content.decode()
    history = admin_client.get(f"/admin/tools/function/{function.pk}/history/").content.decode()
    assert SECRET not in history
    # A staff member who may only view functions sees its status, not its value.
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_function"))
    viewer_client = Client()
    viewer_client.force_login(viewer)
    viewed = viewer_client.get(f"/admin/tools/function/{function.pk}/change/")
    assert viewed.status_code == 200 and SECRET not in viewed.content.decode()
    assert "Secret value" in viewed.content.decode() and "not set" not in viewed.content.decode()


def test_a_functions_secret_is_kept_replaced_or_cleared(admin_client: Client) -> None:
    function = _function_with_secret(Group.objects.create(name="sales"))
    assert _edit(admin_client, function, description="Find a customer.").status_code == 302
    function.refresh_from_db()
    assert (function.description, function.secret_value) == ("Find a customer.", SECRET)  # kept

    assert _edit(admin_client, function, secret_value="rotated-0987").status_code == 302
    function.refresh_from_db()
    assert function.secret_value == "rotated-0987"  # replaced

    kept_header = _edit(admin_client, function, clear_secret="on")
    assert kept_header.status_code == 200
    assert "Give both the header name and its value, or neither." in kept_header.content.decode()
    both = _edit(admin_client, function, clear_secret="on", secret_value="new-one")
    assert "Either type a new secret value or clear it, not both." in both.content.decode()
    function.refresh_from_db()
    assert function.secret_value == "rotated-0987"

    assert _edit(admin_client, function, clear_secret="on", secret_header="").status_code == 302
    function.refresh_from_db()
    assert (function.secret_header, function.secret_value) == ("", "")  # cleared
    page = admin_client.get(f"/admin/tools/function/{function.pk}/change/").content.decode()
    assert "not set" in page


def test_a_function_moved_to_another_host_does_not_take_its_secret_along(admin_client: Client) -> None:
    """An editor who cannot read the secret must not redirect it to a server of theirs: they retype it."""
    function = _function_with_secret(Group.objects.create(name="sales"))
    moved = _edit(admin_client, function, url="https://collector.example.net/api")
    assert moved.status_code == 200
    assert "type the secret value again" in moved.content.decode()
    function.refresh_from_db()
    assert (function.url, function.secret_value) == ("http://crm.internal/api", SECRET)
    # Another path on the same host keeps the secret; a retyped secret (or none) goes with a new host.
    assert _edit(admin_client, function, url="http://crm.internal/v2/api").status_code == 302
    function.refresh_from_db()
    assert (function.url, function.secret_value) == ("http://crm.internal/v2/api", SECRET)
    retyped = _edit(admin_client, function, url="https://crm.example.net/api", secret_value="typed-again-1")
    assert retyped.status_code == 302
    function.refresh_from_db()
    assert (function.url, function.secret_value) == ("https://crm.example.net/api", "typed-again-1")
    cleared = _edit(
        admin_client, function, url="https://other.example.net/", clear_secret="on", secret_header=""
    )
    assert cleared.status_code == 302


def _staff_with(*codenames: str) -> Client:
    staff = UserFactory(username="editor", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    return client


def test_with_staff_privacy_only_superusers_set_where_tools_send_what_users_wrote() -> None:
    """Staff who may change functions and tool settings, but not read chats, cannot point a function or the
    search at a server of their own: its arguments and queries come from users' conversations."""
    function = _function_with_secret(Group.objects.create(name="sales"))
    editor = _staff_with("view_function", "change_function", "add_function", "view_toolsettings",
                         "change_toolsettings", "add_toolsettings")  # fmt: skip
    page = editor.get(f"/admin/tools/function/{function.pk}/change/").content.decode()
    assert (
        'name="url"' not in page and 'name="secret_header"' not in page and 'name="secret_value"' not in page
    )
    moved = _edit(editor, function, url="https://collector.example.net/api", secret_value="mine-123456")
    assert moved.status_code == 302  # the rest of the form is saved; the endpoint is not editable
    function.refresh_from_db()
    assert (function.url, function.secret_value) == ("http://crm.internal/api", SECRET)
    assert editor.get("/admin/tools/function/add/").status_code == 403

    editor.post("/admin/tools/toolsettings/add/", {"search_url": "http://searx.internal/search",
                                                    "search_timeout_s": "10"})  # fmt: skip
    from inference.tools.models import ToolSettings

    settings_row = ToolSettings.objects.first()
    assert settings_row is None or settings_row.search_url == ""
    ToolSettings.objects.all().delete()
    row = ToolSettings.objects.create(search_url="http://searx.internal/search")
    editor.post(
        f"/admin/tools/toolsettings/{row.pk}/change/",
        {
            "search_url": "http://collector.example.net/search",
            "search_timeout_s": "10",
            "python_enabled": "on",
        },
    )
    row.refresh_from_db()
    assert row.search_url == "http://searx.internal/search"


def test_without_staff_privacy_editors_set_tool_destinations(settings: Any) -> None:
    settings.GPTOSS_STAFF_CAN_READ_MESSAGES = True
    function = _function_with_secret(Group.objects.create(name="sales"))
    editor = _staff_with("view_function", "change_function")
    moved = _edit(editor, function, url="http://crm.internal/v3/api")
    assert moved.status_code == 302
    function.refresh_from_db()
    assert function.url == "http://crm.internal/v3/api"
