"""Staff cannot act where they cannot read: with staff privacy on, deleting chats, deleting users, setting
another user's password, making a superuser and signing users out are for superusers only."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client, override_settings
from django.urls import reverse

from chat.models import Conversation, Message
from tests.factories import PASSWORD, UserFactory, make_conversation

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new password 77"


@pytest.fixture
def chat(alice: Any) -> Message:
    conversation = make_conversation(alice, title="Private")
    return Message.objects.create(conversation=conversation, role=Message.Role.USER, content="hello")


@pytest.fixture
def janitor() -> Any:
    """Staff with delete permissions on chats and users and change_user, but not a superuser."""
    user = UserFactory(username="janitor", is_staff=True)
    codenames = ["view_conversation", "delete_conversation", "view_message", "delete_message",
                 "view_user", "change_user", "delete_user"]  # fmt: skip
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def janitor_client(janitor: Any) -> Client:
    client = Client()
    client.force_login(janitor)
    return client


@pytest.fixture
def root_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _bulk_delete(client: Client, model: str, pk: int) -> Any:
    return client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": "delete_selected", "_selected_action": [str(pk)], "post": "yes"},
    )


def test_staff_with_delete_permissions_cannot_delete_other_users_chats(
    chat: Message, janitor_client: Client
) -> None:
    conversation = chat.conversation
    for name, pk in (("chat_conversation", conversation.pk), ("chat_message", chat.pk)):
        delete_url = reverse(f"admin:{name}_delete", args=[pk])
        assert janitor_client.get(delete_url).status_code == 403
        assert janitor_client.post(delete_url, {"post": "yes"}).status_code == 403
        changelist = janitor_client.get(reverse(f"admin:{name}_changelist"))
        assert changelist.status_code == 200 and 'value="delete_selected"' not in changelist.content.decode()
        _bulk_delete(janitor_client, name, pk)
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert Message.objects.filter(pk=chat.pk).exists()


def test_staff_cannot_delete_a_user_and_with_them_their_chats(
    chat: Message, alice: Any, janitor_client: Client
) -> None:
    delete_url = reverse("admin:auth_user_delete", args=[alice.pk])
    assert janitor_client.get(delete_url).status_code == 403
    assert janitor_client.post(delete_url, {"post": "yes"}).status_code == 403
    _bulk_delete(janitor_client, "auth_user", alice.pk)
    assert Conversation.objects.filter(owner=alice).count() == 1


def test_staff_with_change_user_cannot_set_another_users_password(alice: Any, janitor_client: Client) -> None:
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    assert janitor_client.get(url).status_code == 403
    form = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    assert janitor_client.post(url, form).status_code == 403
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD) and not alice.check_password(NEW_PASSWORD)


def test_staff_with_change_user_cannot_make_a_superuser_or_edit_one(
    alice: Any, janitor: Any, janitor_client: Client
) -> None:
    page = janitor_client.get(reverse("admin:auth_user_change", args=[janitor.pk])).content.decode()
    assert 'name="is_superuser"' not in page and 'name="is_active"' in page
    form = {
        "username": "janitor", "email": "janitor@example.test", "is_active": "on", "is_staff": "on",
        "is_superuser": "on", "date_joined_0": "2026-12-01", "date_joined_1": "10:00:00",
        "user_permissions": [str(p.pk) for p in janitor.user_permissions.all()],
    }  # fmt: skip
    assert janitor_client.post(reverse("admin:auth_user_change", args=[janitor.pk]), form).status_code == 302
    janitor.refresh_from_db()
    assert not janitor.is_superuser
    root = UserFactory(username="root2", is_staff=True, is_superuser=True)
    viewed = janitor_client.get(reverse("admin:auth_user_change", args=[root.pk]))
    assert viewed.status_code == 200 and 'name="username"' not in viewed.content.decode()
    refused = janitor_client.post(
        reverse("admin:auth_user_change", args=[root.pk]), {**form, "username": "x"}
    )
    assert refused.status_code == 403
    root.refresh_from_db()
    assert root.username == "root2"


def test_a_superuser_signs_a_user_out_everywhere_and_staff_cannot(
    alice: Any, bob: Any, janitor_client: Client, root_client: Client
) -> None:
    laptop, phone, bobs = Client(), Client(), Client()
    for client, user in ((laptop, alice), (phone, alice), (bobs, bob)):
        client.force_login(user)
    changelist = reverse("admin:auth_user_changelist")
    action = {"action": "sign_out_everywhere", "_selected_action": [str(alice.pk)]}

    assert 'value="sign_out_everywhere"' not in janitor_client.get(changelist).content.decode()
    janitor_client.post(changelist, action)
    assert laptop.get("/").status_code == 200 and phone.get("/").status_code == 200
    sessions = Session.objects.count()

    assert 'value="sign_out_everywhere"' in root_client.get(changelist).content.decode()
    done = root_client.post(changelist, action, follow=True)
    assert "1 users signed out everywhere (2 sessions ended)." in done.content.decode()
    assert Session.objects.count() == sessions - 2
    for client in (laptop, phone):
        response = client.get("/")
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert bobs.get("/").status_code == 200


def test_a_superuser_still_deletes_chats_and_sets_passwords(
    chat: Message, alice: Any, root_client: Client
) -> None:
    conversation_id = chat.conversation_id
    assert (
        root_client.post(reverse("admin:chat_message_delete", args=[chat.pk]), {"post": "yes"}).status_code
        == 302
    )
    _bulk_delete(root_client, "chat_conversation", conversation_id)
    assert not Conversation.objects.filter(pk=conversation_id).exists()
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    form = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    assert root_client.post(url, form).status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


@override_settings(GPTOSS_STAFF_CAN_READ_MESSAGES=True)
def test_without_staff_privacy_django_permissions_decide(
    chat: Message, alice: Any, janitor_client: Client
) -> None:
    assert janitor_client.get(reverse("admin:auth_user_password_change", args=[alice.pk])).status_code == 200
    delete_url = reverse("admin:chat_conversation_delete", args=[chat.conversation_id])
    assert janitor_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not Conversation.objects.filter(pk=chat.conversation_id).exists()
