"""Nobody reaches anything without signing in, and nobody reaches another user's conversation."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from chat.models import Conversation, Message
from chat.services.messages import message_send
from tests.factories import make_conversation

PUBLIC = {
    "login",
    "healthz",
    "chat:invitation_accept",
    "admin:login",
    "admin:logout",
    "admin:javascript-catalog",
}


def _patterns(resolver: URLResolver, prefix: str = "", namespace: str = "") -> list[tuple[str, str]]:
    found = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += _patterns(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            found.append((prefix + str(entry.pattern), f"{namespace}{entry.name or ''}"))
    return found


def _concrete(route: str) -> str:
    """Turn a route into a URL by filling its parameters with plausible values."""
    import re

    path = re.sub(r"<int:[^>]+>", "1", route)
    path = re.sub(r"<(?:str|slug|path):?[^>]*>", "x", path)
    path = re.sub(r"\^|\$|\(\?P<[^>]+>[^)]*\)|\\Z", "x", path)
    return "/" + path.replace("//", "/")


@pytest.mark.django_db
def test_every_url_except_login_redirects_anonymous_visitors_to_login() -> None:
    """And the API's (/v1/) answer 401 in OpenAI's error shape: a client there reads JSON, not a page."""
    client = Client()
    checked = api = 0
    for route, name in _patterns(get_resolver()):
        if name in PUBLIC:
            continue
        url = _concrete(route)
        response = client.get(url)
        if url.startswith("/v1/"):
            assert response.status_code == 401, f"{url} ({name}) answered {response.status_code}"
            assert response.json()["error"]["type"] == "authentication_error"
            api += 1
            continue
        assert response.status_code == 302, (
            f"{url} ({name}) answered {response.status_code} to an anonymous visitor"
        )
        assert "login" in response["Location"], f"{url} ({name}) redirects to {response['Location']}"
        checked += 1
    assert checked >= 10
    assert api >= 3


@pytest.mark.django_db
def test_login_page_is_public() -> None:
    response = Client().get(reverse("login"))
    assert response.status_code == 200
    assert b"Sign in" in response.content


@pytest.mark.parametrize(
    ("method", "name", "data"),
    [
        ("get", "chat:conversation", None),
        ("post", "chat:conversation_rename", {"title": "stolen"}),
        ("get", "chat:conversation_delete", None),
        ("post", "chat:conversation_delete", {}),
        (
            "post",
            "chat:conversation_settings",
            {"settings-reasoning_effort": "low", "settings-instructions": "x"},
        ),
        ("post", "chat:message_create", {"text": "hello from bob"}),
        ("get", "chat:export_md", None),
        ("get", "chat:export_json", None),
        ("post", "chat:share_create", {}),
        ("get", "chat:conversation_row", None),
        ("get", "chat:conversation_topbar", None),
        ("post", "chat:conversation_pin", {"pinned": "1"}),
        ("post", "chat:conversation_archive", {"archived": "1"}),
        ("post", "chat:conversation_move", {"project": ""}),
    ],
)
def test_a_stranger_gets_404_for_every_page_and_action_and_nothing_changes(
    alice: object, bob_client: Client, method: str, name: str, data: dict[str, str] | None
) -> None:
    conversation = make_conversation(alice, title="Alice's plans")
    message_send(conversation=conversation, text="secret plans")
    before = list(Message.objects.values_list("id", "status", "content"))

    response = getattr(bob_client, method)(reverse(name, args=[conversation.pk]), data or {})

    assert response.status_code == 404
    assert b"secret plans" not in response.content
    conversation.refresh_from_db()
    assert conversation.title == "Alice's plans"
    assert conversation.reasoning_effort == "medium"
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert (conversation.pinned_at, conversation.archived_at) == (None, None)
    assert list(Message.objects.values_list("id", "status", "content")) == before


def test_a_strangers_conversation_never_appears_in_the_sidebar(alice: object, bob_client: Client) -> None:
    make_conversation(alice, title="Alice only")
    response = bob_client.get(reverse("chat:index"))
    assert response.status_code == 200
    assert b"Alice only" not in response.content
    for name in ("chat:conversation_list", "chat:archived"):
        assert b"Alice only" not in bob_client.get(reverse(name)).content


def test_pages_carry_a_strict_content_security_policy(alice_client: Client) -> None:
    response = alice_client.get(reverse("chat:index"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "object-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
