"""The browser through restarts: the web server going away mid-answer, and a GPU worker dying (Retry)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Message
from gptoss_web.devtools.stack import Stack
from tests.browser.chat_page import ChatPage, wait_stored
from tests.browser.test_streaming import ENDLESS, _is_endless_text
from tests.factories import make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_web_server_restart_mid_answer_reconnects_and_rebuilds_without_duplicates(
    user_page: Any, alice_user: Any, live: Stack
) -> None:
    chat = ChatPage(user_page(alice_user)).open(make_conversation(alice_user).pk)
    chat.send(ENDLESS)
    reply = chat.wait_reply()
    chat.sample_text(reply, until=lambda s: len(s) >= 2)
    chat.page.fill("textarea[name=text]", "typed during the outage")
    live.kill("web")
    expect(chat.page.locator("[data-role=conn]")).to_be_visible()
    expect(chat.page.locator("[data-role=send]")).to_be_disabled()
    live.start_process("web")
    chat.wait_connected(timeout=20_000)
    expect(chat.page.locator("[data-role=conn]")).to_be_hidden()
    assert chat.composer.input_value() == "typed during the outage"
    if chat.client_message(reply)["status"] == "streaming":
        chat.stop()
    stored = wait_stored(reply)
    chat.wait_status(reply, [stored.status])
    assert _is_endless_text(stored.content)
    assert chat.client_message(reply)["content"] == stored.content
    assert chat.shown_text(reply).strip() == stored.content.strip()


def test_an_answer_cut_off_by_a_dead_worker_is_shown_interrupted_and_retry_answers_again(
    user_page: Any, alice_user: Any, live: Stack
) -> None:
    chat = ChatPage(user_page(alice_user)).open(make_conversation(alice_user).pk)
    chat.send(ENDLESS)
    reply = chat.wait_reply()
    chat.sample_text(reply, until=lambda s: len(s) >= 2)
    # Once the worker has stored some text (about once a second), kill it.
    deadline = time.monotonic() + 10
    while not Message.objects.get(pk=reply).content and time.monotonic() < deadline:
        time.sleep(0.05)
    live.kill("worker")
    try:
        chat.wait_status(reply, ["interrupted"], timeout=40_000)
        chat.expect_status_badge(reply, "Interrupted")
        stored = wait_stored(reply, ["interrupted"])
        assert stored.content and chat.client_message(reply)["content"] == stored.content
    finally:
        live.start_process("worker")
    chat.page.click(f"#message-{reply} [data-role=retry]")
    again = chat.wait_reply(after=reply)
    chat.sample_text(again, until=lambda s: len(s) >= 2)
    chat.stop()
    chat.wait_status(again, ["cancelled"])
    expect(chat.page.locator(f"#message-{reply}")).to_have_count(0)
