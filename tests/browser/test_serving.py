"""The browser when nobody serves a conversation's model: the reader sees why the reply waits, and a reply
that failed for good offers no Retry."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from gptoss_web.devtools.stack import Stack
from inference.models import ServedModel
from tests.browser.chat_page import ChatPage
from tests.factories import make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_reply_nobody_serves_says_so_live_and_once_the_model_is_disabled_fails_without_retry(
    user_page: Any, alice_user: Any, live: Stack
) -> None:
    ServedModel.objects.create(name="tiny", source="tiny")  # the live worker's model
    orphan = ServedModel.objects.create(name="orphan-oss", source="tiny")  # no worker serves it
    conversation = make_conversation(alice_user, model_name="orphan-oss")
    chat = ChatPage(user_page(alice_user)).open(conversation.pk)
    chat.send("Hello")
    reply = chat.wait_reply()
    meta = chat.page.locator(f"#message-{reply} [data-role=meta]")
    expect(meta.locator("[data-role=queue]")).to_have_text("1st in queue")
    expect(meta.locator("[data-role=waiting]")).to_contain_text(
        "No GPU worker is serving orphan-oss right now"
    )

    # Waiting is not failing: the note is not in the error red of a failed reply.
    colors = chat.page.evaluate(
        """() => {
          const probe = document.createElement("span");
          probe.className = "error-text";
          document.body.appendChild(probe);
          const note = document.querySelector("[data-role=waiting]");
          const colors = [getComputedStyle(note).color, getComputedStyle(probe).color];
          probe.remove();
          return colors;
        }"""
    )
    assert colors[0] != colors[1], colors

    # The same note after a reload, first server-rendered, then from the socket's state.
    chat.page.reload()
    expect(meta.locator("[data-role=waiting]")).to_contain_text(
        "No GPU worker is serving orphan-oss right now"
    )
    chat.wait_connected()

    orphan.enabled = False
    orphan.save()  # the reaper fails its queued replies at once
    chat.wait_status(reply, ["failed"])
    expect(meta).to_contain_text("orphan-oss is no longer served on this site")
    expect(chat.page.locator(f"#message-{reply} [data-role=retry]")).to_have_count(0)
    expect(chat.page.locator(f"#message-{reply} [data-role=regenerate]")).to_have_count(0)


def test_a_long_model_name_in_the_waiting_note_and_the_refusal_wraps_within_a_phones_width(
    user_page: Any, alice_user: Any, live: Stack
) -> None:
    name = (
        "house_oss_20b_finetune_mxfp4_q8_embeddings_2026_11_30_v2"  # one word: no space or hyphen to break at
    )
    ServedModel.objects.create(name="tiny", source="tiny")
    model = ServedModel.objects.create(name=name, source="tiny")  # no worker serves it
    conversation = make_conversation(alice_user, model_name=name)
    page = user_page(alice_user, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    chat = ChatPage(page).open(conversation.pk)
    chat.send("Hello")
    reply = chat.wait_reply()
    note = page.locator(f"#message-{reply} [data-role=waiting]")
    expect(note).to_contain_text(name)
    assert note.evaluate("e => e.getBoundingClientRect().right") <= 390, (
        "the waiting note runs off the screen"
    )
    model.enabled = False
    model.save()
    chat.wait_status(reply, ["failed"])
    chat.send("Anyone there?")
    expect(page.locator("[data-role=composer-error]")).to_contain_text(name)
    for selector in (f"#message-{reply} .error-text", "[data-role=composer-error]"):
        right = page.locator(selector).evaluate("e => e.getBoundingClientRect().right")
        assert right <= 390, f"{selector} runs off the screen ({right} px)"
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
