"""Full-text search: prefix matching, ranking, escaped snippets, and only ever the searcher's own data."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from chat.models import Conversation, Message
from chat.search import _MESSAGE_MATCH, _newest_matches_after, prefix_query, search
from chat.services.branches import branch_switch
from tests.factories import make_conversation, make_exchange

pytestmark = pytest.mark.django_db


def test_a_typed_prefix_finds_the_whole_word(alice: Any) -> None:
    conversation = make_conversation(alice, title="Models")
    _, answer = make_exchange(conversation, "Which model?", "Run llama.cpp with the gpt-oss weights.")
    hits = search(user=alice, text="llam")
    assert [h.message_id for h in hits] == [answer.pk]
    assert "<mark>llama" in hits[0].snippet_html


def test_every_word_must_match_and_the_last_one_is_a_prefix(alice: Any) -> None:
    conversation = make_conversation(alice)
    _, both = make_exchange(conversation, "Docker?", "Start PostgreSQL with docker compose up.")
    make_exchange(conversation, "Compose?", "Compose a poem about autumn.")
    assert [h.message_id for h in search(user=alice, text="docker comp")] == [both.pk]
    assert search(user=alice, text="docker zebra") == []
    assert search(user=alice, text="dock compose") == []  # only the word being typed is a prefix


def test_stemming_finds_other_forms_of_a_word(alice: Any) -> None:
    conversation = make_conversation(alice)
    _, answer = make_exchange(conversation, "How?", "The workers were running all night.")
    assert [h.message_id for h in search(user=alice, text="runs")] == [answer.pk]


def test_the_best_match_comes_first(alice: Any) -> None:
    conversation = make_conversation(alice)
    filler = " ".join(["Something else entirely about the weather and the sea."] * 20)
    _, passing = make_exchange(conversation, "Weather?", f"{filler} Quantization is mentioned once.")
    _, focused = make_exchange(
        conversation, "And the experts?", "Quantization: MXFP4 quantization of experts."
    )
    assert [h.message_id for h in search(user=alice, text="quantiz")][:2] == [focused.pk, passing.pk]


def test_a_title_match_ranks_above_messages_and_links_to_the_conversation(alice: Any) -> None:
    titled = make_conversation(alice, title="Kubernetes upgrade plan")
    other = make_conversation(alice, title="Chat")
    make_exchange(other, "And kubernetes?", "Kubernetes runs the containers, among many other things.")
    hits = search(user=alice, text="kubern")
    assert hits[0].conversation_id == titled.pk and hits[0].message_id is None
    assert hits[0].title_html == "<mark>Kubernetes</mark> upgrade plan"
    assert hits[0].url == f"/c/{titled.pk}/"
    assert hits[1].url == f"/c/{other.pk}/#message-{hits[1].message_id}"


def test_snippets_escape_the_text_and_mark_only_the_matches(alice: Any) -> None:
    conversation = make_conversation(alice, title="<b>bold</b> title")
    text = "llama <script>alert(1)</script> & <img src=x onerror=alert(1)>"
    make_exchange(conversation, text, "ok")
    hit = search(user=alice, text="llama")[0]
    snippet = str(hit.snippet_html)
    assert "<script" not in snippet and "<img" not in snippet
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img" in snippet
    assert snippet.count("<mark>") == 1 and "<mark>llama</mark>" in snippet
    assert snippet.replace("<mark>", "").replace("</mark>", "").count("<") == 0
    assert str(hit.title_html) == "&lt;b&gt;bold&lt;/b&gt; title"


def test_text_that_looks_like_the_markers_stays_text(alice: Any) -> None:
    conversation = make_conversation(alice)
    make_exchange(conversation, "hlstart0000 llama hlstop0000 <mark>fake</mark>", "ok")
    snippet = str(search(user=alice, text="llama")[0].snippet_html)
    assert "&lt;mark&gt;fake" in snippet
    assert snippet.count("<mark>") == 1


def test_reasoning_is_searched_only_when_asked(alice: Any) -> None:
    conversation = make_conversation(alice)
    _, answer = make_exchange(conversation, "Hi", "Hello!", reasoning="The user greets me; zeppelin aside.")
    assert search(user=alice, text="zeppelin") == []
    hits = search(user=alice, text="zeppelin", include_reasoning=True)
    assert [(h.message_id, h.in_reasoning) for h in hits] == [(answer.pk, True)]
    assert "<mark>zeppelin</mark>" in hits[0].snippet_html


def test_only_the_searchers_own_conversations_are_searched(alice: Any, bob: Any) -> None:
    mine = make_conversation(alice, title="Secret zebra project")
    make_exchange(mine, "zebra?", "zebra!", reasoning="zebra")
    theirs = make_conversation(bob, title="Bob's zebra notes")
    make_exchange(theirs, "zebra?", "zebra!", reasoning="zebra")
    for include_reasoning in (False, True):
        hits = search(user=alice, text="zebra", include_reasoning=include_reasoning)
        assert hits and {h.conversation_id for h in hits} == {mine.pk}
        ids = {h.message_id for h in hits} - {None}
        assert ids <= set(mine.messages.values_list("pk", flat=True))
    assert {h.conversation_id for h in search(user=bob, text="zebra")} == {theirs.pk}


def test_ephemeral_api_conversations_never_appear(alice: Any) -> None:
    api_call = Conversation.objects.create(owner=alice, title="zebra", model_name="tiny", ephemeral=True)
    make_exchange(api_call, "zebra", "zebra")
    assert search(user=alice, text="zebra", include_reasoning=True) == []


def test_only_the_branch_on_screen_is_found(alice: Any) -> None:
    conversation = make_conversation(alice)
    question, answer = make_exchange(conversation, "Tell me about zebras", "Stripes.")
    other = Message.objects.create(
        conversation=conversation, role="assistant", status="done", reply_to=question, parent=question,
        content="Zebras have stripes.",
    )  # fmt: skip
    branch_switch(conversation=conversation, message_id=other.pk)
    assert [h.message_id for h in search(user=alice, text="stripes")] == [other.pk]
    branch_switch(conversation=conversation, message_id=answer.pk)
    assert [h.message_id for h in search(user=alice, text="stripes")] == [answer.pk]


def test_words_are_quoted_the_last_one_a_prefix_and_punctuation_is_dropped() -> None:
    assert prefix_query("llam") == "'llam':*"
    assert prefix_query("  Docker-Compose's  'x' & | ! :* \\ ") == "'docker' & 'compose' & 's' & 'x':*"
    assert prefix_query("!!! ---") == ""


@pytest.mark.parametrize("text", ["", "   ", "&|!():*", "the", "'); DROP TABLE chat_message; --"])
def test_text_without_searchable_words_finds_nothing(alice: Any, text: str) -> None:
    conversation = make_conversation(alice, title="the drop table")
    make_exchange(conversation, "the", "the")
    assert search(user=alice, text=text) == []
    assert Message.objects.count() == 2


def test_a_common_word_is_ranked_among_its_newest_matches_a_rare_one_over_all(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = make_conversation(alice)
    _, old = make_exchange(conversation, "Old", "Zebra zebra zebra, and a walrus.")
    newer = Message.objects.bulk_create(
        Message(conversation=conversation, role="user", content=f"A zebra among many other animals {n}")
        for n in range(300)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE chat_message")  # the planner's estimate decides
        monkeypatch.setattr("chat.search.RANKED_MATCHES", 20)
        assert _newest_matches_after(cursor, _MESSAGE_MATCH[False], prefix_query("walrus")) == 0
        after = _newest_matches_after(cursor, _MESSAGE_MATCH[False], prefix_query("zebra"))
    assert old.pk < after < newer[-1].pk
    # The old message would rank first ("zebra" three times), but the newest matches are enough.
    hits = search(user=alice, text="zebra", limit=5)
    assert len(hits) == 5 and {h.message_id for h in hits} <= {m.pk for m in newer if m.pk > after}
    assert [h.message_id for h in search(user=alice, text="walrus", limit=5)] == [old.pk]
    assert old.pk in {h.message_id for h in search(user=alice, text="zebra", limit=100)}  # too few: all
