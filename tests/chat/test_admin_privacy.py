"""A curious staff member cannot read, search or sort other users' chats through Django admin.

With GPTOSS_STAFF_CAN_READ_MESSAGES unset, every change list that reaches chat data through its fields or
relations refuses (400, logged) a filter, a search or an ordering by what users, the model or tools wrote:
the page hides the text, and a count or an order must not answer yes/no about it either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db.models import Model
from django.test import Client, override_settings
from django.urls import reverse

from chat.admin import ConversationAdmin, MessageAdmin
from chat.models import Message
from inference.tools.models import Function
from tests.factories import UserFactory, make_conversation

pytestmark = pytest.mark.django_db

LOOKUPS = [
    "", "__exact", "__iexact", "__startswith", "__istartswith", "__contains", "__icontains", "__endswith",
    "__regex", "__iregex", "__gt", "__lt", "__gte", "__lte", "__in", "__isnull", "__range",
]  # fmt: skip
VALUES = {"__isnull": "false", "__in": "s,t", "__range": "a,z", "__regex": "^s", "__iregex": "^s"}
MAX_RELATIONS = 3
SWEPT_ADMINS = (
    "ConversationAdmin", "MessageAdmin", "UserAdmin", "GroupAdmin", "InvitationAdmin", "QuotaAdmin",
    "UsageDayAdmin", "ServedModelAdmin", "ToolSettingsAdmin", "FunctionAdmin", "ApiKeyAdmin",
)  # fmt: skip
LOGGED = (
    "chat.Conversation by title__startswith", "chat.Message by content__icontains",
    "auth.User by conversations__messages__content__regex", "tools.Function by secret_value__startswith",
    "auth.User by password__startswith", "chat.ApiKey by secret_hash__startswith",
    "auth.User by api_keys__secret_hash__startswith",
)  # fmt: skip
TITLE, TEXT = "Merger with Initech", "the launch code is 0000"


# What users, the model and tools wrote, and the secrets: written out here, not imported from chat.admin.
FORBIDDEN = {
    "chat.conversation": {"title", "instructions"},
    "chat.message": {"content", "reasoning", "tool_calls", "error", "notice"},
    "auth.user": {"password"},
    "tools.function": {"secret_value"},
    "chat.apikey": {"secret_hash"},
}


def _forbidden(label: str, name: str) -> bool:
    return name in FORBIDDEN.get(label, ())


def forbidden_paths(model: type[Model], path: str = "", seen: tuple[type[Model], ...] = ()) -> Iterator[str]:
    """Yield every lookup path from *model* to a private or secret field, through up to 3 relations."""
    seen = (*seen, model)
    for field in model._meta.get_fields():
        if getattr(field, "hidden", False):
            continue  # related_name="+": not a lookup
        name = field.name
        if _forbidden(model._meta.label_lower, name):
            yield f"{path}{name}"
            if name == "tool_calls":
                yield f"{path}{name}__0__result"  # a JSON key
        related = field.related_model
        if related is None or isinstance(related, str) or related in seen or len(seen) > MAX_RELATIONS:
            continue
        yield from forbidden_paths(related, f"{path}{name}__", seen)


def _changelist(model: type[Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.fixture
def chats(alice: Any) -> Message:
    """Alice's conversation, with text in every private field."""
    conversation = make_conversation(alice, title=TITLE)
    conversation.instructions = "Answer as our lawyer."
    conversation.save()
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.FAILED,
        content=TEXT,
        reasoning="They want the launch code.",
        tool_calls=[{"recipient": "python", "arguments": "print(1)", "result": "1"}],
        error="The model's output could not be read: launch",
        notice="The answer stopped at its length limit.",
    )


@pytest.fixture
def curious_staff() -> Client:
    """Staff with every view permission (and no more): what testers used to rebuild hidden titles."""
    user = UserFactory(username="curious", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client(raise_request_exception=False)  # a 500 counts as an answer too
    client.force_login(user)
    return client


def test_no_change_list_filters_by_a_private_field_through_any_path_or_lookup(
    chats: Message, curious_staff: Client, caplog: pytest.LogCaptureFixture
) -> None:
    Function.objects.create(name="crm", description="d", url="http://crm.internal/", secret_header="X-Key",
                            secret_value="s3cret")  # fmt: skip
    swept: dict[str, int] = {}
    leaks = []
    for model, model_admin in admin.site._registry.items():
        paths = sorted(set(forbidden_paths(model)))
        if not paths:
            continue  # no way from this model to chat text or a secret
        url = _changelist(model)
        assert curious_staff.get(url).status_code == 200, url
        for path in paths:
            for lookup in LOOKUPS:
                with caplog.at_level(logging.WARNING, logger="chat.admin"):
                    response = curious_staff.get(url, {f"{path}{lookup}": VALUES.get(lookup, "s")})
                if response.status_code != 400:
                    leaks.append(f"{url}?{path}{lookup} -> {response.status_code}")
        swept[type(model_admin).__name__] = len(paths)
    assert not leaks, f"{len(leaks)} lookups answered: {leaks[:20]}"
    # Every admin with a way to chat data was swept, through relations as well as its own fields.
    for name in SWEPT_ADMINS:
        assert swept.get(name), (name, swept)
    logged = caplog.text
    for expected in LOGGED:
        assert expected in logged, expected


def test_the_filters_staff_need_keep_working(chats: Message, curious_staff: Client, bob: Any) -> None:
    make_conversation(bob, title="Bob's", model_name="other-model")
    conversations = _changelist(chats.conversation.__class__)
    for query, shown in [
        ({}, "2 conversations"),
        ({"model_name": chats.conversation.model_name}, "1 conversation"),
        ({"reasoning_effort__exact": "medium"}, "2 conversations"),
        ({"q": "alice"}, "1 conversation"),  # the owner's username
        ({"o": "-5"}, "2 conversations"),  # by the last change
    ]:
        response = curious_staff.get(conversations, query)
        assert response.status_code == 200 and shown in response.content.decode(), (query, shown)
    messages = _changelist(Message)
    for query, shown in [
        ({"status__exact": "failed"}, "1 message"),
        ({"role__exact": "user"}, "0 messages"),
        ({"q": "alice"}, "1 message"),
    ]:
        response = curious_staff.get(messages, query)
        assert response.status_code == 200 and shown in response.content.decode(), (query, shown)
    users = curious_staff.get(reverse("admin:auth_user_changelist"), {"q": "alice"})
    assert users.status_code == 200 and "1 user" in users.content.decode()


def test_search_finds_nothing_by_private_text(
    chats: Message, curious_staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even were private fields added to an admin's search fields, `?q=` would not look in them."""
    monkeypatch.setattr(ConversationAdmin, "search_fields", ("owner__username", "title", "messages__content"))
    monkeypatch.setattr(
        MessageAdmin,
        "search_fields",
        ("conversation__owner__username", "^content", "=conversation__title", "tool_calls"),
    )
    for model in (chats.conversation.__class__, Message, chats.conversation.owner.__class__):
        for word in ("Initech", "launch", "lawyer", "print"):
            response = curious_staff.get(_changelist(model), {"q": word})
            assert response.status_code == 200 and "0 results" in response.content.decode(), (model, word)
            assert TITLE not in response.content.decode() and TEXT not in response.content.decode()
    found = curious_staff.get(_changelist(chats.conversation.__class__), {"q": "alice"})
    assert found.status_code == 200 and "1 conversation" in found.content.decode()


def test_a_column_sorted_by_a_private_field_is_refused(
    chats: Message, curious_staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a title column made sortable, `?o=` would order by hidden titles: it answers 400 instead."""
    monkeypatch.setattr(ConversationAdmin.shown_title, "admin_order_field", "title", raising=False)
    url = _changelist(chats.conversation.__class__)
    for order in ("0", "-0", "5.0", "1.-0"):
        assert curious_staff.get(url, {"o": order}).status_code == 400, order
    assert curious_staff.get(url, {"o": "5"}).status_code == 200


def test_a_filter_on_a_private_field_lists_no_values(
    chats: Message, curious_staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a title filter added to the sidebar, it would list every title: it is left out instead."""
    monkeypatch.setattr(
        ConversationAdmin,
        "list_filter",
        ("model_name", "title", ("instructions", admin.AllValuesFieldListFilter)),
    )
    response = curious_staff.get(_changelist(chats.conversation.__class__))
    assert response.status_code == 200 and TITLE not in response.content.decode()
    assert "By model name" in response.content.decode()


@override_settings(GPTOSS_STAFF_CAN_READ_MESSAGES=True)
def test_staff_allowed_to_read_messages_may_filter_by_them(chats: Message, curious_staff: Client) -> None:
    response = curious_staff.get(_changelist(Message), {"content__icontains": "launch"})
    assert response.status_code == 200 and "1 message" in response.content.decode()
    # Secrets stay out of reach whatever the setting.
    assert (
        curious_staff.get(reverse("admin:auth_user_changelist"), {"password__startswith": "m"}).status_code
        == 400
    )
