"""The browser when nobody serves a conversation's model: the reader sees why the reply waits, and a reply
that failed for good offers no Retry."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from gptoss_web.stack import Stack
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
