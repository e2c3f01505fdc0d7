"""One definition of how a message renders: for every status, the thread the live view built from the socket's
events is the thread the server renders on a reload (the same elements, classes, attributes and words).

A reply of a model nobody serves stays put in its queue; the test then plays the GPU worker through the
services and the stream, as inference.worker.tasks does, so each state holds still while the two are compared.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from chat.services import messages, replies
from gptoss_web.devtools.stack import Stack, wait_until
from inference.models import ServedModel
from tests.browser.chat_page import ChatPage
from tests.browser.worker_play import finish, start, stream
from tests.factories import make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The thread as a tree of {tag, attributes, children}: whitespace between elements and inside text collapsed,
# class names sorted. Left out: what only a connected page has (the Copy, Retry and Edit buttons of a message,
# the code blocks' Copy buttons) and `data-seq`, the live view's own bookkeeping.
NORMALISE = """
(root) => {
  const norm = (node) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.data.replace(/\\s+/g, " ").trim();
      return text ? text : null;
    }
    if (node.nodeType !== Node.ELEMENT_NODE || node.classList.contains("copy-btn")) { return null; }
    const attrs = {};
    for (const a of Array.from(node.attributes).sort((x, y) => x.name.localeCompare(y.name))) {
      if (a.name === "data-seq") { continue; }
      attrs[a.name] = a.name === "class" ? a.value.split(/\\s+/).filter(Boolean).sort().join(" ") : a.value;
    }
    const children = node.classList.contains("message-actions")
      ? [] : Array.from(node.childNodes).map(norm).filter((c) => c !== null);
    return { tag: node.tagName.toLowerCase(), attrs, children };
  };
  return Array.from(root.querySelectorAll("#thread > article.message")).map(norm);
}
"""

SERVER_THREAD = f"""
async () => {{
  const html = await (await fetch(window.location.href)).text();
  const page = new DOMParser().parseFromString(html, "text/html");
  return ({NORMALISE})(page);
}}
"""


def live_thread(chat: ChatPage) -> list[dict[str, Any]]:
    return list(chat.page.evaluate(f"() => ({NORMALISE})(document)"))


def server_thread(chat: ChatPage) -> list[dict[str, Any]]:
    return list(chat.page.evaluate(SERVER_THREAD))


def assert_same_as_server(chat: ChatPage, reply: int, status: str) -> list[dict[str, Any]]:
    """Wait until the live view shows *reply* as *status*; then its thread must be the server's."""
    chat.page.wait_for_selector(f"#message-{reply}[data-status={status}]")
    live: list[dict[str, Any]] = []
    server: list[dict[str, Any]] = []

    def same() -> bool:
        # A queued reply's waiting note may arrive between the two looks: compare until both settle.
        nonlocal live, server
        live, server = live_thread(chat), server_thread(chat)
        return live == server

    try:
        wait_until(same, timeout=20, what=f"the live and the server-rendered {status} reply to agree")
    except Exception:
        assert live == server  # pytest shows where they differ
    return live


def test_every_status_renders_the_same_live_and_after_a_reload(
    user_page: Any, alice_user: Any, live: Stack, worker_heartbeat: Any
) -> None:
    ServedModel.objects.create(name="tiny", source="tiny")
    ServedModel.objects.create(name="orphan-oss", source="tiny")  # no worker serves it: replies stay queued
    conversation = make_conversation(alice_user, model_name="orphan-oss")
    chat = ChatPage(user_page(alice_user)).open(conversation.pk)

    # Queued: its place in line and why it waits.
    _, queued = messages.message_send(conversation=conversation, text="What is MXFP4?")
    thread = assert_same_as_server(chat, queued.pk, "queued")
    expect(chat.page.locator(f"#message-{queued.pk} [data-role=queue]")).to_have_text("1st in queue")
    replies.reply_cancel(conversation=conversation)
    assert_same_as_server(chat, queued.pk, "cancelled")

    # Streaming: reasoning while no answer exists yet, then answer text and a tool card still running.
    reply = start(conversation, "What is the weather in Paris?")
    stream(reply, 1, type="delta", reasoning="The user wants the weather.\nCall the tool.", content="")
    assert_same_as_server(chat, reply.pk, "streaming")
    call = {"recipient": "functions.get_weather", "arguments": '{"city": "Paris"}'}
    stream(reply, 2, type="tool", index=0, call=call)
    stream(reply, 3, type="delta", reasoning="", content="It is ")
    thread = assert_same_as_server(chat, reply.pk, "streaming")
    assert "running…" in str(thread)

    # Done, with a finished tool card, a notice and the figures.
    done_call = {**call, "result": '{"temperature": 21}'}
    stream(reply, 4, type="tool", index=0, call=done_call)
    notice = "The 3 oldest turns were left out to fit the model's context."
    stream(reply, 5, type="notice", notice=notice)
    replies.reply_notice(message=reply, notice=notice)
    finish(
        reply, "done", "It is **21 °C** in Paris.", [done_call], seq=5,
        reasoning="The user wants the weather.\nCall the tool.", queue_wait_ms=12_000, ttft_ms=850,
    )  # fmt: skip
    assert_same_as_server(chat, reply.pk, "done")
    stats = chat.page.locator(f"#message-{reply.pk} [data-role=stats]")
    expect(stats).to_contain_text("queue 12.0 s")
    expect(stats).to_contain_text("first token 850 ms")
    expect(chat.page.locator(f"#message-{reply.pk} [data-role=notice]")).to_have_text(notice)

    # Failed, with a failed tool card.
    reply = start(conversation, "Run it")
    failed_call = {
        "recipient": "python",
        "arguments": "print(1)",
        "result": "Error: no sandbox",
        "error": True,
    }
    stream(reply, 1, type="tool", index=0, call=failed_call)
    finish(reply, "failed", "", [failed_call], seq=1, error="The python tool could not run: no sandbox.")
    assert_same_as_server(chat, reply.pk, "failed")
    expect(chat.page.locator(f"#message-{reply.pk} .tool-card.failed .tool-state")).to_have_text("error")

    # Cancelled while streaming: the worker stores the text it had.
    reply = start(conversation, "Count to a thousand")
    stream(reply, 1, type="delta", reasoning="", content="1, 2, 3")
    replies.reply_cancel(conversation=conversation)
    finish(reply, "cancelled", "1, 2, 3", [], seq=1, queue_wait_ms=3, ttft_ms=40)
    assert_same_as_server(chat, reply.pk, "cancelled")

    # Interrupted: the worker died; the reaper keeps what was streamed.
    reply = start(conversation, "Tell me a story")
    stream(reply, 1, type="delta", reasoning="A short one.", content="Once upon")
    assert replies.reply_interrupt(message=reply, reason="The GPU worker stopped while writing this reply.")
    assert_same_as_server(chat, reply.pk, "interrupted")
