"""Pages and forms as a signed-in user sees them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation, Invitation, Message
from chat.services.messages import message_send
from tests.factories import PASSWORD, UserFactory, make_conversation

pytestmark = pytest.mark.django_db


def test_signing_in_leads_to_an_empty_chat_app(alice: object) -> None:
    client = Client()
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert b"How can I help?" in response.content
    assert b"No conversations yet." in response.content


def test_a_wrong_password_re_renders_the_form_with_an_error(alice: object) -> None:
    response = Client().post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_repeated_wrong_passwords_lock_out_for_a_while_not_for_ever(alice: object) -> None:
    client = Client()
    for _ in range(5):
        client.post(reverse("login"), {"username": "alice", "password": "nope"})
    locked = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many attempts" in locked.content
    # After the cool-off period the right password works again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(hours=1))
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302


def test_new_conversation_with_text_sends_it_and_opens_the_conversation(alice_client: Client) -> None:
    response = alice_client.post(reverse("chat:conversation_create"), {"text": "What is MXFP4?"})
    conversation = Conversation.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "chat:conversation", args=[conversation.pk]
    )
    page = alice_client.get(response["Location"])
    assert b"What is MXFP4?" in page.content
    assert b"1st in queue" in page.content  # as the live view says it
    assert conversation.title == "What is MXFP4?"


def test_a_refused_first_message_keeps_the_typed_text_and_leaves_no_conversation_behind(
    alice_client: Client, alice: object, settings: object, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GPTOSS_MAX_IN_FLIGHT_PER_USER = 1  # type: ignore[attr-defined]
    message_send(conversation=make_conversation(alice), text="first")
    with django_capture_on_commit_callbacks() as announced:
        response = alice_client.post(reverse("chat:conversation_create"), {"text": "my long draft"})
    assert response.status_code == 409
    assert b"You already have 1 reply being written" in response.content
    assert b"my long draft</textarea>" in response.content
    assert Conversation.objects.count() == 1
    assert not announced  # the other tabs' sidebars hear of no conversation, not even one created and deleted


def test_a_conversation_s_top_bar_comes_alone_for_the_page_that_started_it(
    alice_client: Client, alice: object
) -> None:
    conversation = make_conversation(alice, title="Picnic plans")
    make_conversation(alice, title="Another conversation")
    response = alice_client.get(reverse("chat:conversation_topbar", args=[conversation.pk]))
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    assert html.strip().startswith('<header class="topbar">') and html.strip().endswith("</header>")
    assert "Picnic plans" in html and 'name="settings-instructions"' in html and "Create link" in html
    assert "Another conversation" not in html  # no sidebar, no thread: the bar alone


def test_sending_while_answering_keeps_the_typed_text(alice_client: Client, alice: object) -> None:
    conversation = make_conversation(alice)
    message_send(conversation=conversation, text="first")
    response = alice_client.post(
        reverse("chat:message_create", args=[conversation.pk]), {"text": "my long draft"}
    )
    assert response.status_code == 409
    assert b"still answering" in response.content
    assert b"my long draft</textarea>" in response.content
    assert Message.objects.filter(role="user").count() == 1


def test_an_empty_message_is_refused_with_a_field_error(alice_client: Client, alice: object) -> None:
    conversation = make_conversation(alice)
    response = alice_client.post(reverse("chat:message_create", args=[conversation.pk]), {"text": "   "})
    assert response.status_code == 400
    assert b"Type a message first." in response.content
    assert not Message.objects.exists()


@pytest.mark.parametrize("url", ["chat:message_create", "chat:conversation_create"])
def test_a_message_with_a_nul_character_gets_a_form_error_and_stores_nothing(
    alice_client: Client, alice: object, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = make_conversation(alice)
    args = [conversation.pk] if url == "chat:message_create" else []
    response = alice_client.post(reverse(url, args=args), {"text": "before\x00after"})
    assert response.status_code == 400
    assert b"This message contains a NUL character" in response.content
    assert not Message.objects.exists()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_rename_and_settings(alice_client: Client, alice: object) -> None:
    conversation = make_conversation(alice)
    alice_client.post(reverse("chat:conversation_rename", args=[conversation.pk]), {"title": "Holidays"})
    response = alice_client.post(
        reverse("chat:conversation_settings", args=[conversation.pk]),
        {
            "settings-reasoning_effort": "high",
            "settings-enabled_tools": ["python"],
            "settings-instructions": "Short.",
        },
        follow=True,
    )
    assert b"Settings saved" in response.content
    conversation.refresh_from_db()
    assert (conversation.title, conversation.reasoning_effort, conversation.enabled_tools) == (
        "Holidays",
        "high",
        ["python"],
    )


def test_invalid_settings_show_field_errors_and_save_nothing(alice_client: Client, alice: object) -> None:
    conversation = make_conversation(alice, instructions="keep me")
    response = alice_client.post(
        reverse("chat:conversation_settings", args=[conversation.pk]),
        {
            "settings-reasoning_effort": "extreme",
            "settings-enabled_tools": ["rm-rf"],
            "settings-instructions": "new",
        },
    )
    assert response.status_code == 400
    assert b"Select a valid choice" in response.content
    conversation.refresh_from_db()
    assert (conversation.reasoning_effort, conversation.enabled_tools, conversation.instructions) == (
        "medium",
        [],
        "keep me",
    )


def test_delete_asks_for_confirmation_first(alice_client: Client, alice: object) -> None:
    conversation = make_conversation(alice, title="Doomed")
    confirm = alice_client.get(reverse("chat:conversation_delete", args=[conversation.pk]))
    assert b"Delete \xe2\x80\x9cDoomed\xe2\x80\x9d?" in confirm.content
    assert Conversation.objects.exists()
    response = alice_client.post(reverse("chat:conversation_delete", args=[conversation.pk]), follow=True)
    assert b"Deleted" in response.content
    assert not Conversation.objects.exists()


def test_model_output_is_rendered_as_sanitized_markdown(alice_client: Client, alice: object) -> None:
    conversation = make_conversation(alice)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="done",
        content="**bold** <script>window.__xss=1</script> [x](javascript:alert(1)) ![i](https://evil.example/i.png)",
    )
    page = alice_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "<strong>bold</strong>" in page
    assert "<script>window" not in page
    assert 'href="javascript' not in page
    assert "<img" not in page.split('id="thread"')[1]


def test_password_change(alice_client: Client) -> None:
    response = alice_client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a much better passphrase",
            "new_password2": "a much better passphrase",
        },
        follow=True,
    )
    assert b"Password changed" in response.content


@override_settings(GPTOSS_INVITATIONS=True)
def test_an_invitation_link_creates_one_account_once() -> None:
    invitation = Invitation.objects.create(email="carol@example.test")
    url = reverse("chat:invitation_accept", args=[invitation.token])
    form = {
        "username": "carol",
        "password1": "purple monkey dishwasher",
        "password2": "purple monkey dishwasher",
    }
    response = Client().post(url, form)
    assert response.status_code == 302
    assert Client().post(url, {**form, "username": "mallory"}).status_code == 410
    invitation.refresh_from_db()
    assert invitation.used_by is not None and invitation.used_by.username == "carol"


@override_settings(GPTOSS_INVITATIONS=True)
def test_an_invitation_cannot_take_a_name_that_reads_as_an_existing_users() -> None:
    """Full-width letters become ASCII when the account is stored: "ｒｏｏｔ" is taken if "root" is."""
    from django.contrib.auth import get_user_model

    UserFactory(username="root")
    url = reverse("chat:invitation_accept", args=[Invitation.objects.create().token])
    form = {"password1": "purple monkey dishwasher", "password2": "purple monkey dishwasher"}
    for lookalike in ("\uff52\uff4f\uff4f\uff54", "\uff32\uff2f\uff2f\uff34"):  # ｒｏｏｔ, ＲＯＯＴ
        response = Client().post(url, {**form, "username": lookalike})
        assert response.status_code == 400 and "That username is taken." in response.content.decode()
    spaced = Client().post(url, {**form, "username": "ro ot<b>"})
    assert spaced.status_code == 400 and "Enter a valid username." in spaced.content.decode()
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["root"]


def test_invitation_links_are_off_by_default() -> None:
    invitation = Invitation.objects.create()
    assert Client().get(reverse("chat:invitation_accept", args=[invitation.token])).status_code == 404


def test_staff_admin_lists_users_with_conversation_counts_but_not_message_contents(alice: object) -> None:
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    conversation = make_conversation(alice)
    _, reply = message_send(conversation=conversation, text="private diary")
    client = Client()
    client.force_login(admin_user)
    users = client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert "Conversations" in users and "alice" in users
    user_page = client.get(reverse("admin:chat_message_change", args=[reply.reply_to_id])).content.decode()
    assert "private diary" not in user_page
    assert "hidden" in user_page
    with override_settings(GPTOSS_STAFF_CAN_READ_MESSAGES=True):
        assert (
            "private diary"
            in client.get(reverse("admin:chat_message_change", args=[reply.reply_to_id])).content.decode()
        )


def test_a_page_that_fails_on_the_server_says_so_in_a_plain_sentence_without_details(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. while PostgreSQL is down: not a bare "Server Error (500)", and nothing from the exception."""
    from django.db import OperationalError

    from chat import selectors

    def down(**_: object) -> None:
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    client = Client(raise_request_exception=False)
    client.force_login(alice)  # type: ignore[arg-type]
    monkeypatch.setattr(selectors, "sidebar_page", down)
    response = client.get("/")
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page and "Nothing you wrote is lost: try again in a moment." in page
    assert "5432" not in page and "OperationalError" not in page
