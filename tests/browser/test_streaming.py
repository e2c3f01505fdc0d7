"""Live answers in the browser, end to end: Daphne, a GPU worker on the tiny model and Debian's chromium."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Message
from chat.services.messages import message_send
from chat.services.replies import reply_cancel
from gptoss_web.devtools.tinymodel import (
    ENDLESS_CYCLE,
    ENDLESS_HEAD,
    PLAIN_ANSWER,
    REASONING_ANALYSIS,
    REASONING_ANSWER,
)
from tests.browser.chat_page import ChatPage, wait_stored
from tests.factories import UserFactory, make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ENDLESS = "Tell me an endless story"


def _is_endless_text(text: str) -> bool:
    """The endless script's text: its head, then whole or partial cycles, nothing repeated out of place."""
    if not text.startswith(ENDLESS_HEAD):
        return False
    rest = text[len(ENDLESS_HEAD) :]
    cycles, tail = divmod(len(rest), len(ENDLESS_CYCLE))
    return rest == ENDLESS_CYCLE * cycles + ENDLESS_CYCLE[:tail]


def _streaming(chat: ChatPage, reply: int) -> bool:
    return chat.client_message(reply)["status"] in ("queued", "streaming")


def _growing_prefixes(seen: list[str]) -> bool:
    return all(b.startswith(a) and b != a for a, b in itertools.pairwise(seen))


def test_the_answer_appears_in_more_than_one_step(user_page: Any, alice_user: Any) -> None:
    chat = ChatPage(user_page(alice_user)).open(make_conversation(alice_user).pk)
    chat.send(ENDLESS)
    reply = chat.wait_reply()
    seen = chat.sample_text(reply, until=lambda s: len(s) >= 3)
    assert _growing_prefixes(seen), seen
    chat.stop()
    stored = wait_stored(reply)
    chat.wait_status(reply, ["cancelled"])
    assert all(stored.content.startswith(s) for s in seen)


def test_a_plain_answer_ends_as_the_stored_text_byte_for_byte(user_page: Any, alice_user: Any) -> None:
    chat = ChatPage(user_page(alice_user)).open(make_conversation(alice_user).pk)
    chat.send("Hello there")
    reply = chat.wait_reply()
    chat.wait_status(reply, ["done"])
    stored = Message.objects.get(pk=reply)
    assert stored.content == PLAIN_ANSWER
    assert chat.client_message(reply)["content"] == stored.content
    assert chat.shown_text(reply) == PLAIN_ANSWER
    expect(chat.composer).to_have_value("")
    # The first message named the conversation, live, in the top bar and the sidebar.
    expect(chat.page.locator("[data-role=title]")).to_have_text("Hello there")
    expect(chat.page.locator(".conversation-link.active .title")).to_have_text("Hello there")
    stats = chat.page.locator(f"#message-{reply} [data-role=stats]").inner_text()
    assert "first token" in stats and "tok/s" in stats and f"{stored.answer_tokens} tokens" in stats


def test_the_first_message_starts_the_conversation_in_one_action_and_its_answer_streams_in_place(
    user_page: Any, alice_user: Any
) -> None:
    page = user_page(alice_user)
    page.evaluate("window.sameDocument = true")  # gone if the browser loaded another page
    page.fill("textarea[name=text]", ENDLESS)
    page.locator("textarea[name=text]").press("Enter")
    page.wait_for_url("**/c/*/")
    conversation = Message.objects.get(role="user").conversation_id
    assert page.url.endswith(f"/c/{conversation}/")
    assert page.evaluate("window.sameDocument") is True  # the History API moved the address, nothing loaded
    chat = ChatPage(page)
    chat.wait_connected()
    reply = chat.wait_reply()
    # The top bar of the conversation (title, settings) and its link at the top of the sidebar.
    expect(page.locator("[data-role=title]")).to_have_text(ENDLESS)
    expect(page.locator(".settings-panel")).to_have_count(1)
    expect(page.locator(".conversation-link.active")).to_have_attribute("href", f"/c/{conversation}/")
    seen = chat.sample_text(reply, until=lambda s: len(s) >= 2)
    assert _growing_prefixes(seen)
    chat.stop()
    stored = wait_stored(reply)
    chat.wait_status(reply, ["cancelled"])
    assert chat.client_message(reply)["content"] == stored.content


def test_closing_the_page_mid_stream_and_reopening_shows_the_answer_without_duplicates(
    user_page: Any, alice_user: Any
) -> None:
    page = user_page(alice_user)
    conversation = make_conversation(alice_user)
    chat = ChatPage(page).open(conversation.pk)
    chat.send(ENDLESS)
    reply = chat.wait_reply()
    chat.sample_text(reply, until=lambda s: len(s) >= 2)
    context = page.context
    page.close()  # the laptop lid closes mid-answer
    time.sleep(0.3)
    again = ChatPage(context.new_page()).open(conversation.pk)
    first_seen = again.client_message(reply)
    if first_seen["status"] in ("queued", "streaming"):
        # Still answering: the reopened page streams on from where the answer is now.
        seen = again.sample_text(reply, until=lambda s: len(s) >= 2 or not _streaming(again, reply))
        assert all(_is_endless_text(s) for s in seen), seen
        again.stop()
    stored = wait_stored(reply)
    again.wait_status(reply, [stored.status])
    assert _is_endless_text(stored.content), stored.content
    assert again.client_message(reply)["content"] == stored.content
    assert again.shown_text(reply).strip() == stored.content.strip()


def test_stop_ends_the_answer_and_keeps_the_partial_text(user_page: Any, alice_user: Any) -> None:
    chat = ChatPage(user_page(alice_user)).open(make_conversation(alice_user).pk)
    chat.send(ENDLESS)
    reply = chat.wait_reply()
    chat.sample_text(reply, until=lambda s: len(s) >= 2)
    expect(chat.page.locator("[data-role=stop]")).to_be_visible()
    chat.page.locator("textarea[name=text]").press("Escape")
    chat.wait_status(reply, ["cancelled"])
    chat.expect_status_badge(reply, "Stopped")
    stored = wait_stored(reply)
    assert stored.status == "cancelled"
    assert stored.content and _is_endless_text(stored.content)
    shown = chat.shown_text(reply)
    chat.page.wait_for_timeout(600)
    assert chat.shown_text(reply) == shown, "the answer kept growing after Stop"
    assert chat.client_message(reply)["content"] == Message.objects.get(pk=reply).content
    expect(chat.page.locator("[data-role=stop]")).to_be_hidden()
    expect(chat.page.locator(f"#message-{reply} [data-role=regenerate]")).to_be_visible()


def test_the_reasoning_shows_live_and_folds_away_when_the_answer_starts(
    user_page: Any, alice_user: Any
) -> None:
    page = user_page(alice_user)
    # Record every state the reasoning section passes through, as the user would have seen it.
    page.add_init_script("""
      window.__reasoningStates = [];
      new MutationObserver(function () {
        var r = document.querySelector("article.message-assistant:last-of-type [data-role=reasoning]");
        if (!r || r.hidden) { return; }
        var c = r.parentNode.querySelector("[data-role=content]");
        window.__reasoningStates.push({open: r.open, reasoning: r.querySelector("[data-role=reasoning-body]")
          .textContent, content: c.innerText});
      }).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
    """)
    chat = ChatPage(page).open(make_conversation(alice_user, reasoning_effort="high").pk)
    chat.send("Please think about it")
    reply = chat.wait_reply()
    chat.wait_status(reply, ["done"])
    states = page.evaluate("() => window.__reasoningStates")
    live = [s for s in states if s["open"] and s["reasoning"] and not s["content"].strip()]
    assert live, states
    assert all(REASONING_ANALYSIS.startswith(s["reasoning"]) for s in live)
    reasoning = page.locator(f"#message-{reply} [data-role=reasoning]")
    expect(reasoning).not_to_have_attribute("open", "")
    assert chat.shown_text(reply) == REASONING_ANSWER
    reasoning.locator("summary").click()
    expect(reasoning.locator("[data-role=reasoning-body]")).to_have_text(REASONING_ANALYSIS)


def test_a_failed_send_keeps_the_typed_text(user_page: Any, alice_user: Any) -> None:
    chat = ChatPage(user_page(alice_user)).open(make_conversation(alice_user).pk)
    chat.send(ENDLESS)
    reply = chat.wait_reply()
    chat.sample_text(reply, until=lambda s: len(s) >= 1)
    chat.send("A second question while the first is answering")
    error = chat.page.locator("[data-role=composer-error]")
    expect(error).to_contain_text("still answering")
    expect(chat.composer).to_have_value("A second question while the first is answering")
    chat.stop()
    chat.wait_status(reply, ["cancelled"])
    too_long = "x" * 40_000
    chat.composer.evaluate("(el, text) => { el.value = text; }", too_long)
    chat.composer.press("Enter")
    expect(error).to_contain_text("the limit is 32,000")
    assert chat.composer.input_value() == too_long
    assert Message.objects.filter(conversation__owner=alice_user, role="user").count() == 1


def test_regenerate_and_edit_replace_the_latest_answer(user_page: Any, alice_user: Any) -> None:
    conversation = make_conversation(alice_user)
    chat = ChatPage(user_page(alice_user)).open(conversation.pk)
    chat.send("Hello")
    first = chat.wait_reply()
    chat.wait_status(first, ["done"])
    chat.page.click(f"#message-{first} [data-role=regenerate]")
    second = chat.wait_reply(after=first)
    chat.wait_status(second, ["done"])
    expect(chat.page.locator(f"#message-{first}")).to_have_count(0)
    assert chat.shown_text(second) == PLAIN_ANSWER
    question = next(m["id"] for m in chat.messages() if m["role"] == "user")
    chat.page.click(f"#message-{question} [data-role=edit]")
    editor = chat.page.locator("[data-role=edit-form] textarea")
    editor.fill("Please think again")
    editor.press("Enter")
    third = chat.wait_reply(after=second)
    chat.wait_status(third, ["done"])
    assert chat.shown_text(third) == REASONING_ANSWER
    shown = [(m["role"], m["content"]) for m in chat.messages()]
    assert shown == [("user", "Please think again"), ("assistant", REASONING_ANSWER)]
    chat.page.reload()
    chat.wait_connected()
    assert [(m["role"], m["content"]) for m in chat.messages()] == shown


def test_two_tabs_on_one_conversation_both_stream(user_page: Any, alice_user: Any) -> None:
    page = user_page(alice_user)
    conversation = make_conversation(alice_user)
    one = ChatPage(page).open(conversation.pk)
    two = ChatPage(page.context.new_page()).open(conversation.pk)
    one.send(ENDLESS)
    reply = two.wait_reply()
    seen = two.sample_text(reply, until=lambda s: len(s) >= 2)
    assert _growing_prefixes(seen)
    two.stop()
    stored = wait_stored(reply)
    for tab in (one, two):
        tab.wait_status(reply, ["cancelled"])
        assert tab.client_message(reply)["content"] == stored.content


def test_the_queue_position_updates_live(user_page: Any, alice_user: Any) -> None:
    chat = ChatPage(user_page(alice_user)).open(make_conversation(alice_user).pk)
    # Two other users' endless answers take both GPU slots; alice waits her turn.
    busy = []
    for name in ("carol", "dave"):
        other = make_conversation(UserFactory(username=name))
        message_send(conversation=other, text=ENDLESS)
        busy.append(other)
    deadline = time.monotonic() + 20
    while Message.objects.filter(status="streaming").count() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    chat.send("Hello")
    reply = chat.wait_reply()
    queue = chat.page.locator(f"#message-{reply} [data-role=queue]")
    expect(queue).to_have_text("1st in queue")
    for other in busy:
        reply_cancel(conversation=other)
    chat.wait_status(reply, ["done"])
    assert chat.shown_text(reply) == PLAIN_ANSWER
    stored = Message.objects.get(pk=reply)
    assert stored.queue_wait_ms is not None and stored.queue_wait_ms > 0
