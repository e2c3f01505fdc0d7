"""Branches and the context meter in the browser, end to end: every version an edit or a regenerate makes is
kept and reachable with "‹ 2 / 3 ›", by mouse and by keyboard, on a laptop and a phone; the branch on screen
survives a reload; the composer's meter counts the branch's tokens and warns before older turns go."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Message
from gptoss_web.devtools.tinymodel import PLAIN_ANSWER, REASONING_ANSWER
from tests.browser.chat_page import ChatPage
from tests.factories import make_conversation, make_exchange

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def _nav(chat: ChatPage, message_id: int) -> Any:
    return chat.page.locator(f"#message-{message_id} [data-role=branch]")


def _edit(chat: ChatPage, question: int, text: str, after: int) -> tuple[int, int]:
    """Edit the question *question* into *text*; return the new question's and its reply's ids."""
    chat.page.locator(f"#message-{question} [data-role=edit]").click()
    editor = chat.page.locator("[data-role=edit-form] textarea")
    editor.fill(text)
    editor.press("Enter")
    reply = chat.wait_reply(after=after)
    chat.wait_status(reply, ["done"])
    return _question_of(chat), reply


def _question_of(chat: ChatPage) -> int:
    return int(next(m["id"] for m in chat.messages() if m["role"] == "user"))


def _shown(chat: ChatPage) -> list[str]:
    return [m["content"] for m in chat.messages()]


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_edit_twice_then_switch_with_the_arrows_and_the_keyboard_and_a_reload_keeps_the_branch(
    user_page: Any, alice_user: Any, size: str
) -> None:
    options = PHONE if size == "phone" else {"viewport": {"width": 1280, "height": 800}}
    conversation = make_conversation(alice_user)
    chat = ChatPage(user_page(alice_user, **options)).open(conversation.pk)
    chat.send("Hello")
    first = chat.wait_reply()
    chat.wait_status(first, ["done"])
    expect(_nav(chat, _question_of(chat))).to_have_count(0)  # one version: no arrows

    second_question, second = _edit(chat, _question_of(chat), "Please think again", first)
    third_question, _ = _edit(chat, second_question, "Hello once more", second)
    assert _shown(chat) == ["Hello once more", PLAIN_ANSWER]
    nav = _nav(chat, third_question)
    expect(nav).to_have_attribute("aria-label", "Version 3 of 3")
    expect(nav).to_contain_text("3 / 3")
    expect(nav.locator("[data-role=branch-next]")).to_be_disabled()
    nav.scroll_into_view_if_needed()
    expect(nav).to_be_in_viewport()

    # The mouse: back one version, with its own answer.
    nav.locator("[data-role=branch-previous]").click()
    expect(_nav(chat, second_question)).to_have_attribute("aria-label", "Version 2 of 3")
    expect(chat.page.locator(f"#message-{third_question}")).to_have_count(0)
    assert _shown(chat) == ["Please think again", REASONING_ANSWER]

    # The keyboard alone: the arrow keeps the focus on the version it shows, until the first one.
    previous = chat.page.locator(f"#message-{second_question} [data-role=branch-previous]")
    previous.focus()
    chat.page.keyboard.press("Enter")
    first_question = int(Message.objects.get(conversation=conversation, content="Hello").pk)
    expect(_nav(chat, first_question)).to_have_attribute("aria-label", "Version 1 of 3")
    # At the first version "‹" is disabled: the focus went to "›", where Space goes forward again.
    expect(chat.page.locator(f"#message-{first_question} [data-role=branch-previous]")).to_be_disabled()
    forward = chat.page.locator(f"#message-{first_question} [data-role=branch-next]")
    expect(forward).to_be_focused()
    assert _shown(chat) == ["Hello", PLAIN_ANSWER]

    # The branch on screen is stored: a reload, and a second tab, show it.
    chat.page.reload()
    chat.wait_connected()
    expect(_nav(chat, first_question)).to_have_attribute("aria-label", "Version 1 of 3")
    assert _shown(chat) == ["Hello", PLAIN_ANSWER]
    other = ChatPage(chat.page.context.new_page()).open(conversation.pk)
    chat.page.locator(f"#message-{first_question} [data-role=branch-next]").press("Space")
    expect(_nav(other, second_question)).to_have_attribute("aria-label", "Version 2 of 3")
    assert _shown(other) == ["Please think again", REASONING_ANSWER]


def test_regenerate_makes_versions_of_an_answer_on_a_phone(user_page: Any, alice_user: Any) -> None:
    conversation = make_conversation(alice_user)
    chat = ChatPage(user_page(alice_user, **PHONE)).open(conversation.pk)
    chat.send("Hello")
    first = chat.wait_reply()
    chat.wait_status(first, ["done"])
    chat.page.locator(f"#message-{first} [data-role=regenerate]").click()
    second = chat.wait_reply(after=first)
    chat.wait_status(second, ["done"])
    nav = _nav(chat, second)
    expect(nav).to_have_attribute("aria-label", "Version 2 of 2")
    nav.locator("[data-role=branch-previous]").press("Enter")
    expect(_nav(chat, first)).to_have_attribute("aria-label", "Version 1 of 2")
    expect(chat.page.locator(f"#message-{first} [data-role=branch-next]")).to_be_focused()


def test_the_context_meter_counts_the_branch_and_warns_before_older_turns_are_left_out(
    user_page: Any, alice_user: Any
) -> None:
    conversation = make_conversation(alice_user)
    chat = ChatPage(user_page(alice_user)).open(conversation.pk)
    meter = chat.page.locator("[data-role=composer] [data-role=context]")
    bar = meter.locator("[data-role=context-bar]")
    chat.send("Hello")
    reply = chat.wait_reply()
    chat.wait_status(reply, ["done"])
    stored = Message.objects.get(pk=reply)
    used = stored.prompt_tokens + stored.answer_tokens
    assert stored.prompt_tokens > 0
    expect(bar).to_have_attribute("value", str(used))  # updated live, after the answer
    # The served model's context (the live stack serves 4,096 tokens, 2,000 of them kept for an answer).
    window, room = int(bar.get_attribute("max") or 0), int(bar.get_attribute("high") or 0)
    assert (window, window - room) == (4096, 2000)
    expect(bar).to_have_attribute("aria-label", f"Context used: {used} of {window} tokens")
    expect(meter.locator("[data-role=context-text]")).to_have_text(f"{used} / {_short(window)} tokens")
    expect(meter.locator("[data-role=context-warning]")).to_be_hidden()
    chat.page.reload()
    chat.wait_connected()
    expect(bar).to_have_attribute("value", str(used))  # the server renders the same figure

    # A long conversation: its last reply's prompt and answer leave no room for the next answer.
    long = make_conversation(alice_user)
    _, last = make_exchange(long, "A long question", "A long answer")
    Message.objects.filter(pk=last.pk).update(prompt_tokens=room - 99, answer_tokens=100)
    chat.open(long.pk)
    warning = chat.page.locator("[data-role=composer] [data-role=context-warning]")
    expect(warning).to_have_text(
        "Older turns will be left out of the next reply: they no longer fit the model's context."
    )
    expect(warning).to_be_visible()
    expect(chat.page.locator("[data-role=context-text]")).to_have_text(
        f"{_short(room + 1)} / {_short(window)} tokens"
    )


def _short(n: int) -> str:
    """A token count as the meter writes it (format.js formatTokens)."""
    if n < 1000:
        return str(n)
    return f"{n / 1000:.{1 if n < 10000 else 0}f}".removesuffix(".0") + "k"
