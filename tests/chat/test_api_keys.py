"""Personal API keys: shown once, stored as a hash, refused when revoked, expired, wrong, or switched off."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.errors import ApiKeyRefused
from chat.models import ApiKey, GroupApiAccess
from chat.selectors import api_allowed
from chat.services.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGE = "/settings/api-keys/"


def _refusal(header: str | None) -> ApiKeyRefused:
    with pytest.raises(ApiKeyRefused) as refused:
        api_key_authenticate(header)
    return refused.value


def _switch_off(user: Any) -> Group:
    group = Group.objects.create(name="interns")
    user.groups.add(group)
    GroupApiAccess.objects.create(group=group, api_enabled=False)
    return group


def test_the_page_shows_a_new_key_once_and_stores_only_its_hash(alice: Any, alice_client: Client) -> None:
    assert reverse("chat:api_keys") == PAGE
    response = alice_client.post(PAGE, {"name": "Laptop scripts", "expires_in_days": ""})
    assert response.status_code == 201
    key = ApiKey.objects.get(owner=alice)
    page = response.content.decode()
    start = page.index('id="new-api-key"')
    plaintext = page[page.index(">", start) + 1 : page.index("</code>", start)]
    assert plaintext.startswith(key.prefix + "_") and len(plaintext) > 50
    assert 'data-copy="new-api-key"' in page and response["Cache-Control"].startswith("max-age=0")
    # The row holds the prefix and a SHA-256 of the key, never the key or its secret part.
    secret = plaintext.removeprefix(key.prefix + "_")
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert key.secret_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert not any(secret in str(value) for value in row.values()), row
    assert key.name == "Laptop scripts" and key.expires_at is None
    # Reloaded, the page lists the key by its prefix and no longer shows it.
    again = alice_client.get(PAGE).content.decode()
    assert secret not in again and key.prefix in again and "Laptop scripts" in again
    assert api_key_authenticate(f"Bearer {plaintext}").user == alice


def test_a_key_with_an_expiry_and_a_form_with_errors(alice: Any, alice_client: Client) -> None:
    assert alice_client.post(PAGE, {"name": "CI", "expires_in_days": "30"}).status_code == 201
    key = ApiKey.objects.get(owner=alice)
    assert key.expires_at is not None
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    missing = alice_client.post(PAGE, {"name": "", "expires_in_days": "0"})
    assert missing.status_code == 400 and "Give the key a name" in missing.content.decode()
    assert ApiKey.objects.count() == 1


def test_authenticate_returns_the_key_and_its_user(alice: Any) -> None:
    key, plaintext = api_key_create(owner=alice, name="k")
    auth = api_key_authenticate(f"Bearer {plaintext}")
    assert auth.key.pk == key.pk and auth.user == alice
    assert api_key_authenticate(f"bearer   {plaintext} ").user == alice  # the scheme is case-insensitive


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "gok_x_y"])
def test_a_request_without_a_bearer_header_is_refused(header: str | None) -> None:
    refused = _refusal(header)
    assert (refused.reason, refused.status) == ("no Authorization: Bearer header", 401)


def test_a_wrong_secret_with_the_right_prefix_is_an_unknown_key(alice: Any) -> None:
    key, plaintext = api_key_create(owner=alice, name="k")
    for token in (f"{key.prefix}_{'A' * 43}", plaintext[:-1], f"{plaintext}x", key.prefix, "gok_nothing",
                  "sk-abc", plaintext.replace("gok_", "gox_")):  # fmt: skip
        refused = _refusal(f"Bearer {token}")
        assert (refused.reason, refused.status) == ("unknown key", 401), token


def test_a_revoked_key_is_refused_at_once(alice: Any) -> None:
    key, plaintext = api_key_create(owner=alice, name="k")
    api_key_authenticate(f"Bearer {plaintext}")
    assert api_key_revoke(key=key, by=alice) is True
    assert api_key_revoke(key=key, by=alice) is False  # once
    assert _refusal(f"Bearer {plaintext}").reason == "revoked key"


def test_an_expired_key_is_refused(alice: Any) -> None:
    _, plaintext = api_key_create(owner=alice, name="k", expires_at=timezone.now() - timedelta(seconds=1))
    assert _refusal(f"Bearer {plaintext}").reason == "expired key"
    _, later = api_key_create(owner=alice, name="k2", expires_at=timezone.now() + timedelta(days=1))
    assert api_key_authenticate(f"Bearer {later}").user == alice


def test_an_inactive_users_key_is_refused(alice: Any) -> None:
    _, plaintext = api_key_create(owner=alice, name="k")
    alice.is_active = False
    alice.save()
    assert (_refusal(f"Bearer {plaintext}").reason, _refusal(f"Bearer {plaintext}").status) == (
        "inactive user",
        401,
    )


def test_a_group_with_the_api_switched_off_refuses_its_members_with_403(alice: Any, bob: Any) -> None:
    _, plaintext = api_key_create(owner=alice, name="k")
    on = Group.objects.create(name="everyone")
    GroupApiAccess.objects.create(group=on, api_enabled=True)
    alice.groups.add(on)
    bob.groups.add(on)
    assert api_allowed(user=alice)
    _switch_off(alice)  # one group off is enough, whatever the others say
    assert not api_allowed(user=alice) and api_allowed(user=bob)
    refused = _refusal(f"Bearer {plaintext}")
    assert (refused.reason, refused.status) == ("the API is switched off for your group", 403)
    assert "ask an administrator" in str(refused)


def test_the_page_says_the_api_is_off_and_offers_no_create(alice: Any, alice_client: Client) -> None:
    api_key_create(owner=alice, name="Old key")
    _switch_off(alice)
    page = alice_client.get(PAGE).content.decode()
    assert "The API is switched off for your group" in page
    assert "Create key" not in page and 'name="name"' not in page
    assert "Old key" in page and "Revoke" in page  # old keys can still be revoked
    assert alice_client.post(PAGE, {"name": "new"}).status_code == 403
    assert ApiKey.objects.count() == 1


def test_revoke_from_the_page_and_another_users_key_is_404(
    alice: Any, bob: Any, alice_client: Client, bob_client: Client
) -> None:
    key, plaintext = api_key_create(owner=alice, name="Mine")
    url = reverse("chat:api_key_revoke", args=[key.pk])
    assert bob_client.post(url).status_code == 404
    assert bob_client.post(reverse("chat:api_key_revoke", args=[key.pk + 999])).status_code == 404
    assert alice_client.get(url).status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None
    response = alice_client.post(url, follow=True)
    assert response.status_code == 200 and "Revoked “Mine”" in response.content.decode()
    assert "Revoked</span>" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert _refusal(f"Bearer {plaintext}").reason == "revoked key"
    assert "Mine" not in bob_client.get(PAGE).content.decode()


def test_a_session_cookie_alone_never_authorizes_the_api(alice_client: Client) -> None:
    """The function takes the header's value only: a signed-in browser without a key has none."""
    assert _refusal(None).status == 401


def test_last_used_is_written_at_most_once_a_minute(
    alice: Any, django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, plaintext = api_key_create(owner=alice, name="k")
    with django_assert_num_queries(3):  # the key and its owner, the group switch, the write
        api_key_authenticate(f"Bearer {plaintext}")
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    with django_assert_num_queries(2):  # no write within the minute
        api_key_authenticate(f"Bearer {plaintext}")
    key.refresh_from_db()
    assert key.last_used_at == first
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    api_key_authenticate(f"Bearer {plaintext}")
    key.refresh_from_db()
    assert key.last_used_at == later


def test_no_log_line_holds_the_key(alice: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        key, plaintext = api_key_create(owner=alice, name="k")
        api_key_authenticate(f"Bearer {plaintext}")
        api_key_revoke(key=key, by=alice)
    secret = plaintext.removeprefix(key.prefix + "_")
    assert key.prefix in caplog.text and secret not in caplog.text and key.secret_hash not in caplog.text


def test_the_user_menu_links_to_the_page(alice_client: Client) -> None:
    assert f'href="{PAGE}"' in alice_client.get("/").content.decode()


# Admin


@pytest.fixture
def keyed(alice: Any) -> tuple[ApiKey, str]:
    return api_key_create(owner=alice, name="Alice's laptop")


@pytest.fixture
def staff_client() -> Client:
    """Staff who may view and change API keys (and view users), not a superuser."""
    user = UserFactory(username="keeper", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_apikey", "change_apikey", "add_apikey", "view_user"])
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_keys_without_hash_or_key(keyed: tuple[ApiKey, str], staff_client: Client) -> None:
    key, plaintext = keyed
    secret = plaintext.removeprefix(key.prefix + "_")
    changelist = reverse("admin:chat_apikey_changelist")
    for url in (changelist, reverse("admin:chat_apikey_change", args=[key.pk])):
        page = staff_client.get(url).content.decode()
        assert key.prefix in page and "Alice&#x27;s laptop" in page and "alice" in page
        assert key.secret_hash not in page and secret not in page and "secret_hash" not in page
        assert "Secret hash" not in page
    page = staff_client.get(changelist).content.decode()
    assert "Revoke the selected keys" in page and "delete_selected" not in page
    for column in ("Created at", "Last used at", "Expires at", "Revoked at", "Owner"):
        assert column in page, column


def test_the_admin_refuses_to_filter_or_search_by_the_hash(
    keyed: tuple[ApiKey, str], staff_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    key, _ = keyed
    changelist = reverse("admin:chat_apikey_changelist")
    with caplog.at_level(logging.WARNING, logger="chat.admin"):
        lookups = (
            "secret_hash",
            "secret_hash__startswith",
            "secret_hash__gt",
            "owner__api_keys__secret_hash",
        )
        for lookup in lookups:
            assert staff_client.get(changelist, {lookup: key.secret_hash[:2]}).status_code == 400, lookup
        users = reverse("admin:auth_user_changelist")
        assert staff_client.get(users, {"api_keys__secret_hash__startswith": "a"}).status_code == 400
    assert "chat.ApiKey by secret_hash__startswith" in caplog.text
    found = staff_client.get(changelist, {"q": key.secret_hash}).content.decode()
    assert "0 API keys" in found
    assert "1 API key" in staff_client.get(changelist, {"q": key.prefix}).content.decode()
    assert "1 API key" in staff_client.get(changelist, {"q": "alice"}).content.decode()


def test_the_admin_cannot_add_or_delete_keys(keyed: tuple[ApiKey, str], staff_client: Client) -> None:
    key, _ = keyed
    root = Client()
    root.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for client in (staff_client, root):
        assert client.get(reverse("admin:chat_apikey_add")).status_code == 403
        delete = reverse("admin:chat_apikey_delete", args=[key.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
    assert ApiKey.objects.count() == 1


def test_the_admin_revoke_action(alice: Any, keyed: tuple[ApiKey, str], staff_client: Client) -> None:
    key, plaintext = keyed
    other, _ = api_key_create(owner=alice, name="kept")
    changelist = reverse("admin:chat_apikey_changelist")
    response = staff_client.post(
        changelist, {"action": "revoke", "_selected_action": [str(key.pk)]}, follow=True
    )
    assert response.status_code == 200 and "1 API keys revoked" in response.content.decode()
    key.refresh_from_db()
    other.refresh_from_db()
    assert key.revoked_at is not None and other.revoked_at is None
    assert _refusal(f"Bearer {plaintext}").reason == "revoked key"
    # Staff who may only view keys get no action.
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_apikey"))
    client = Client()
    client.force_login(viewer)
    assert "Revoke the selected keys" not in client.get(changelist).content.decode()
    client.post(changelist, {"action": "revoke", "_selected_action": [str(other.pk)]})
    other.refresh_from_db()
    assert other.revoked_at is None


def test_the_group_switch_is_edited_on_the_group_admin(alice: Any) -> None:
    group = Group.objects.create(name="contractors")
    alice.groups.add(group)
    root = Client()
    root.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:auth_group_change", args=[group.pk])
    assert "API enabled" in root.get(url).content.decode()
    response = root.post(url, {
        "name": "contractors",
        "api_access-TOTAL_FORMS": "1", "api_access-INITIAL_FORMS": "0",
        "api_access-MIN_NUM_FORMS": "0", "api_access-MAX_NUM_FORMS": "1",
        "api_access-0-group": str(group.pk),
        # api_enabled unticked: off
        "api_access-0-id": "",
        # The group's other inline (reasoning visibility), left as it is.
        "reasoning-TOTAL_FORMS": "0", "reasoning-INITIAL_FORMS": "0",
        "reasoning-MIN_NUM_FORMS": "0", "reasoning-MAX_NUM_FORMS": "1",
        "_save": "Save",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    assert GroupApiAccess.objects.get(group=group).api_enabled is False
    assert not api_allowed(user=alice)
