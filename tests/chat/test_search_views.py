"""The search page (works without JavaScript) and the palette's JSON, as a signed-in user and a stranger."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import make_conversation, make_exchange

pytestmark = pytest.mark.django_db


def test_the_search_page_lists_linked_highlighted_hits(alice: Any, alice_client: Client) -> None:
    conversation = make_conversation(alice, title="Serving models")
    _, answer = make_exchange(conversation, "Which runtime?", "We serve <b>gpt-oss</b> with llama.cpp.")
    response = alice_client.get(reverse("chat:search"), {"q": "llam"})
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/c/{conversation.pk}/#message-{answer.pk}"' in html
    assert "<mark>llama.cpp</mark>" in html
    assert "&lt;b&gt;gpt-oss&lt;/b&gt;" in html and "<b>gpt-oss</b>" not in html
    assert "1 best match" in html
    assert 'value="llam"' in html  # the form keeps the words


def test_the_search_page_without_words_shows_only_the_form(alice_client: Client) -> None:
    response = alice_client.get(reverse("chat:search"))
    assert response.status_code == 200
    assert b'name="q"' in response.content and b'name="reasoning"' in response.content
    assert b"search-hits" not in response.content


def test_reasoning_is_found_only_with_the_checkbox(alice: Any, alice_client: Client) -> None:
    conversation = make_conversation(alice)
    make_exchange(conversation, "Hi", "Hello!", reasoning="Think about the zeppelin first.")
    without = alice_client.get(reverse("chat:search"), {"q": "zeppelin"}).content.decode()
    assert "Nothing matches “zeppelin”." in without
    with_reasoning = alice_client.get(reverse("chat:search"), {"q": "zeppelin", "reasoning": "on"})
    html = with_reasoning.content.decode()
    assert "<mark>zeppelin</mark>" in html and "Reasoning" in html
    assert re.search(r'name="reasoning"[^>]*checked', html)


def test_a_stranger_finds_nothing_of_anothers_and_no_id_leaks(alice: Any, bob_client: Client) -> None:
    conversation = make_conversation(alice, title="Alice's zebra plans")
    _, answer = make_exchange(conversation, "zebra?", "zebra stripes", reasoning="zebra")
    page = bob_client.get(reverse("chat:search"), {"q": "zebra", "reasoning": "on"})
    hits = bob_client.get(reverse("chat:search_hits"), {"q": "zebra", "reasoning": "on"})
    assert page.status_code == 200 and hits.status_code == 200
    assert hits.json() == {"query": "zebra", "hits": []}
    for body in (page.content.decode(), hits.content.decode()):
        assert "zebra plans" not in body and "stripes" not in body
        assert f"/c/{conversation.pk}/" not in body and f"message-{answer.pk}" not in body
    # And what search links to is not theirs to open.
    assert bob_client.get(f"/c/{conversation.pk}/").status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(alice: Any) -> None:
    make_exchange(make_conversation(alice), "zebra?", "zebra")
    for name in ("chat:search", "chat:search_hits"):
        response = Client().get(reverse(name), {"q": "zebra"})
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_palettes_json_carries_text_parts_not_markup(alice: Any, alice_client: Client) -> None:
    conversation = make_conversation(alice, title="Kubernetes <i>notes</i>")
    _, answer = make_exchange(conversation, "Docs?", "See <script>x</script> kubernetes docs")
    data = alice_client.get(reverse("chat:search_hits"), {"q": "kubern"}).json()
    title_hit, message_hit = data["hits"]
    assert title_hit["url"] == f"/c/{conversation.pk}/" and title_hit["message"] is None
    assert title_hit["title"] == [["Kubernetes", True], [" <i>notes</i>", False]]
    assert message_hit["url"] == f"/c/{conversation.pk}/#message-{answer.pk}"
    assert ["kubernetes", True] in message_hit["snippet"]
    assert "x</script> kubernetes" in "".join(text for text, _ in message_hit["snippet"])
    assert message_hit["role"] == "assistant" and message_hit["in_reasoning"] is False


def test_over_long_words_search_for_nothing(alice: Any, alice_client: Client) -> None:
    response = alice_client.get(reverse("chat:search_hits"), {"q": "x" * 201})
    assert response.status_code == 200 and response.json()["hits"] == []
